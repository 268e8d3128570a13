"""bench/serve.py's results: the machine, the summary against the goals, the printed report."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _serve_gateway import GatewayRound
from _serve_llama import KIND_LABELS, LlamaResult
from _serve_procs import GOAL_GATEWAY_TOK_S, GOAL_HPKE_RATIO, GOAL_RATIO, GOAL_TTFT_OVERHEAD_MS


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    versions = {}
    for name in ("llama_cpp", "uvicorn", "httpx"):
        try:
            module = __import__(name)
            versions[name] = str(getattr(module, "__version__", "?"))
        except ImportError:
            versions[name] = "not installed"
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "commit": commit + (" (src/ modified)" if dirty else ""),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3]
        if Path("/proc/loadavg").exists()
        else None,
        **versions,
    }


def stream_interval_ms(args: argparse.Namespace) -> float:
    """The --stream-interval-ms cllm serve ran with (its default unless one was given)."""
    if args.stream_interval_ms is not None:
        return float(args.stream_interval_ms)
    from cllm.server import ServeSettings

    return float(ServeSettings.model_fields["stream_interval_ms"].default)


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rounded(value: float | None, digits: int) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return round(value, digits)


def summarise(
    llama: LlamaResult | None, rounds: list[GatewayRound] | None, args: argparse.Namespace
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "direct_tok_s": None,
        "served_tok_s": None,
        "ratio": None,
        "hpke_ratio": None,
        "ttft_overhead_ms": None,
        "gateway_tok_s": None,
    }
    goals: dict[str, bool | None] = dict.fromkeys(
        ("ratio", "ttft_overhead_ms", "hpke_ratio", "gateway_tok_s")
    )
    if llama is not None:
        trials = llama.trials
        tok = {k: med([t.tok_s for t in ts]) for k, ts in trials.items()}
        ttft = {k: med([t.ttft_ms for t in ts]) for k, ts in trials.items()}
        d_tok, s_tok, h_tok = tok["direct"], tok["served"], tok["hpke"]
        overhead = ttft["served"] - ttft["direct"]
        everything = [t for ts in trials.values() for t in ts]
        tokens = {t.tokens for t in everything}
        reference = trials["direct"][0].text

        def paired(kind: str) -> float:
            # Per repetition, so slow phases of the machine cancel out.
            pairs = zip(trials["direct"], trials[kind], strict=True)
            return med([t.tok_s / d.tok_s for d, t in pairs])

        out.update(
            direct_tok_s=rounded(d_tok, 2),
            served_tok_s=rounded(s_tok, 2),
            ratio=rounded(s_tok / d_tok, 4),
            hpke_ratio=rounded(h_tok / d_tok, 4),
            ttft_overhead_ms=rounded(overhead, 2),
        )
        goals.update(
            ratio=s_tok / d_tok >= GOAL_RATIO,
            ttft_overhead_ms=overhead <= GOAL_TTFT_OVERHEAD_MS,
            hpke_ratio=h_tok / d_tok >= GOAL_HPKE_RATIO,
        )
        out.update(
            hpke_tok_s=rounded(h_tok, 2),
            httpx_tok_s=rounded(tok["httpx"], 2),
            httpx_ratio=rounded(tok["httpx"] / d_tok, 4),
            ttft_ms={k: rounded(v, 2) for k, v in ttft.items()},
            hpke_ttft_overhead_ms=rounded(ttft["hpke"] - ttft["direct"], 2),
            ratio_paired_median=rounded(paired("served"), 4),
            hpke_ratio_paired_median=rounded(paired("hpke"), 4),
            httpx_ratio_paired_median=rounded(paired("httpx"), 4),
            spread={
                kind: {
                    "tok_s_min": rounded(min(t.tok_s for t in ts), 2),
                    "tok_s_max": rounded(max(t.tok_s for t in ts), 2),
                    "ttft_ms_min": rounded(min(t.ttft_ms for t in ts), 2),
                    "ttft_ms_max": rounded(max(t.ttft_ms for t in ts), 2),
                }
                for kind, ts in trials.items()
            },
            trials_tok_s={k: [rounded(t.tok_s, 2) for t in ts] for k, ts in trials.items()},
            trials_ttft_ms={k: [rounded(t.ttft_ms, 2) for t in ts] for k, ts in trials.items()},
            repeat=args.repeat,
            order=llama.order,
            disturbed_repetitions=llama.disturbed,
            machine_quiet=llama.quiet,
            foreign_cores=llama.foreign_cores,
            quiet_threshold_cores=args.quiet,
            max_tokens=args.max_tokens,
            tokens_generated=sorted(tokens),
            reached_max_tokens=tokens == {args.max_tokens},
            same_text=all(t.text == reference for t in everything),
            model=llama.model_id,
            n_threads=llama.n_threads,
            stream_interval_ms=stream_interval_ms(args),
            content_events_per_answer={
                k: med([len(t.times) for t in ts]) for k, ts in trials.items()
            },
            cpu_ms_per_token={
                kind: {
                    part: rounded(seconds / sum(t.tokens for t in trials[kind]) * 1000, 4)
                    for part, seconds in llama.cpu[kind].items()
                    if kind != "direct" or part == "engine"
                }
                for kind in trials
            },
        )
    if rounds:
        ok = [r for r in rounds if not r.errors]
        total = sum(r.tokens for r in ok)
        g_tok = med([r.tok_s for r in ok]) if ok else 0.0
        out["gateway_tok_s"] = round(g_tok, 1)
        goals["gateway_tok_s"] = g_tok >= GOAL_GATEWAY_TOK_S and len(ok) == len(rounds)
        out.update(
            gateway_rounds_tok_s=[round(r.tok_s, 1) for r in rounds],
            gateway_streams=args.streams,
            gateway_stream_tokens=args.stream_tokens,
            gateway_upstream_batch=args.upstream_batch,
            gateway_errors=[e for r in rounds for e in r.errors][:5],
            gateway_server_cpu_us_per_token=rounded(sum(r.server_cpu for r in ok) / total * 1e6, 2)
            if total
            else None,
            gateway_upstream_cpu_us_per_token=rounded(
                sum(r.upstream_cpu for r in ok) / total * 1e6, 2
            )
            if total
            else None,
            gateway_client_cpu_us_per_token=rounded(sum(r.client_cpu for r in ok) / total * 1e6, 2)
            if total
            else None,
        )
    out["goals"] = goals
    out["goals_met"] = all(v for v in goals.values() if v is not None)
    out["machine"] = machine()
    return out


def print_report(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    if result["direct_tok_s"] is not None:
        table = Table(
            title=f"embedded llama-cpp, {result['model']}, {result['max_tokens']} tokens, "
            f"{result['repeat']} interleaved repetitions (medians)"
        )
        columns = ("", "tok/s", "min", "max", "TTFT ms", "ratio", "paired", "CPU ms/token")
        for column in columns:
            table.add_column(column, justify="right" if column else "left")
        spread = result["spread"]
        cpu = result["cpu_ms_per_token"]
        direct = result["trials_tok_s"]["direct"]
        for kind, label in KIND_LABELS.items():
            tok_s = statistics.median(result["trials_tok_s"][kind])
            pairs = zip(direct, result["trials_tok_s"][kind], strict=True)
            parts = cpu[kind]
            table.add_row(
                label,
                f"{tok_s:.1f}",
                f"{spread[kind]['tok_s_min']:.1f}",
                f"{spread[kind]['tok_s_max']:.1f}",
                f"{result['ttft_ms'][kind]:.2f}",
                f"{tok_s / result['direct_tok_s']:.4f}",
                f"{statistics.median(t / d for d, t in pairs):.4f}",
                " / ".join(f"{parts[p]:.3f}" for p in ("engine", "loop", "client") if p in parts),
            )
        console.print(table)
        console.print(
            f"TTFT overhead {result['ttft_overhead_ms']} ms (HPKE "
            f"{result['hpke_ttft_overhead_ms']} ms); tokens per answer "
            f"{result['tokens_generated']}, same text on all sides: {result['same_text']}; "
            f"{result['disturbed_repetitions']} disturbed repetitions left out. CPU per token: "
            "engine process / its event-loop thread / this client process."
        )
    if result["gateway_tok_s"] is not None:
        console.print(
            f"gateway: {result['gateway_tok_s']:,.0f} tok/s (median of rounds "
            f"{result['gateway_rounds_tok_s']}), {result['gateway_streams']} streams x "
            f"{result['gateway_stream_tokens']} tokens; CPU per token: server "
            f"{result['gateway_server_cpu_us_per_token']} us, upstream "
            f"{result['gateway_upstream_cpu_us_per_token']} us, client "
            f"{result['gateway_client_cpu_us_per_token']} us"
        )
        if result["gateway_errors"]:
            console.print(f"[red]gateway errors[/red]: {result['gateway_errors']}")
    if result.get("machine_quiet") is False or result.get("gateway_machine_quiet") is False:
        console.print(
            "[yellow]other processes kept the CPUs busy during every attempt: these numbers "
            "measure the machine's load as much as cllm[/yellow]"
        )
    goals = result["goals"]
    labels = {
        "ratio": f"served / direct tok/s >= {GOAL_RATIO}",
        "ttft_overhead_ms": f"TTFT overhead <= {GOAL_TTFT_OVERHEAD_MS:.0f} ms",
        "hpke_ratio": f"HPKE / direct tok/s >= {GOAL_HPKE_RATIO}",
        "gateway_tok_s": f"gateway >= {GOAL_GATEWAY_TOK_S:,.0f} tok/s over 64 streams",
    }
    for key, label in labels.items():
        if goals[key] is not None:
            console.print(f"goal {label}: {'[green]met' if goals[key] else '[red]not met'}")
    m = result["machine"]
    console.print(
        f"{m['cpu']}, {m['cpus']} CPUs, Python {m['python']}, llama-cpp-python {m['llama_cpp']}, "
        f"{m['date']}, commit {m['commit']}, load {m['loadavg']}"
    )
