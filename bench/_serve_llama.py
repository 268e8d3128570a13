"""bench/serve.py, measurement 1 and 2: the embedded engine, direct against served against
sealed (HPKE) and the project's client."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from _procs import HOST, process_cpu
from _serve_client import Dechunker, RawConnection, SseTokens, Trial
from _serve_procs import (
    CHAT_PATH,
    PROMPT,
    REQUEST_TIMEOUT,
    SEED,
    ForeignLoad,
    ServeProcess,
    thread_cpu,
)
from _serve_workers import DirectEngine


def sse_trial(sse: SseTokens, start: float) -> Trial:
    sse.parse()
    if sse.errors:
        raise SystemExit(f"the server answered with an error event: {sse.errors[0]}")
    if not sse.done:
        raise SystemExit("the stream ended without data: [DONE]")
    if sse.completion_tokens is None:
        raise SystemExit("the stream carries no usage record")
    times = [t - start for t in sse.times]
    return Trial(times, "".join(sse.texts), sse.finish_reason, sse.completion_tokens)


def blocking_stream(port: int, request: bytes) -> tuple[int, float, list[tuple[float, bytes]]]:
    """The lightest client there is, for the one-stream measurements: a blocking socket (no
    event loop), one ``recv`` per wake-up, each timed; de-chunked as it goes. Returns the
    status, the start time and the (arrival time, body bytes) pieces."""
    with socket.create_connection((HOST, port)) as sock:  # before the clock starts
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(REQUEST_TIMEOUT)
        clock = time.perf_counter
        recv = sock.recv
        start = clock()
        sock.sendall(request)
        raw: list[tuple[float, bytes]] = []
        head = b""
        while b"\r\n\r\n" not in head:
            data = recv(1 << 16)
            if not data:
                raise ConnectionError("the server closed the connection")
            head += data
        now = clock()
        head, _, rest = head.partition(b"\r\n\r\n")
        status = int(head.split(maxsplit=2)[1])
        if b"transfer-encoding: chunked" not in head.lower():
            return status, start, [(now, rest)]  # an error answer with a Content-Length
        chunks = Dechunker()
        raw.append((now, rest))
        body = chunks.feed(rest)
        while not chunks.done:
            data = recv(1 << 16)
            if not data:
                raise ConnectionError("the server closed the connection mid-answer")
            raw.append((clock(), data))
            chunks.feed(data)  # only to see the end; decoded again below, after the clock
        pieces = [(raw[0][0], body)]
        chunks = Dechunker()
        chunks.feed(raw[0][1])
        pieces += [(when, chunks.feed(data)) for when, data in raw[1:]]
        return status, start, pieces


def served_trial(port: int, body: bytes, keys: Any) -> Trial:
    """One plain streamed answer on a fresh connection (opened before the clock starts: the
    server closes idle ones after 5 s); its signature is checked after the stream (not timed)."""
    from cllm.crypto import verify_answer

    status, start, pieces = blocking_stream(port, RawConnection.encode(CHAT_PATH, body))
    if status != 200:
        raise SystemExit(f"POST {CHAT_PATH}: HTTP {status}: {pieces[0][1][:300]!r}")
    sse = SseTokens()
    for when, data in pieces:
        sse.feed(data, when)
    trial = sse_trial(sse, start)
    if not sse.signed:
        raise SystemExit("the served answer carries no signature")
    received = b"".join(data for _, data in pieces)
    verify_answer(received, request_body=body, signing_key=keys.signing_key)
    return trial


def client_trial(client: Any, doc: dict[str, Any], keys: Any, *, encrypt: bool) -> Trial:
    """One answer through the project's client (``cllm.client.post`` on ``httpx.Client``):
    sealed to the attested HPKE key and opened record by record when ``encrypt``; signature
    checked. (The synchronous client: on this machine it needs about a third less CPU per
    token than ``apost`` on ``httpx.AsyncClient``, CPU the engine would otherwise lose.)"""
    from cllm.client import post

    sse = SseTokens()
    clock = time.perf_counter

    def on_piece(piece: bytes) -> None:
        sse.feed(piece, clock())

    start = clock()
    answer = post(client, CHAT_PATH, doc, keys=keys, encrypt=encrypt, on_piece=on_piece)
    if answer.status_code != 200 or answer.signed is None:
        raise SystemExit(f"POST {CHAT_PATH} (encrypt={encrypt}): HTTP {answer.status_code}")
    return sse_trial(sse, start)


def attested_keys(client: Any) -> Any:
    """The server's keys from fresh evidence for our nonce, checked (binding, nonce, RTMR3)."""
    from cllm.client import PinnedKeys
    from cllm.evidence import check_evidence, parse_evidence

    nonce = secrets.token_bytes(32)
    response = client.get("/v1/attestation/report", params={"nonce": nonce.hex()})
    if response.status_code != 200:
        raise SystemExit(f"GET /v1/attestation/report: HTTP {response.status_code}")
    evidence = parse_evidence(response.content)
    check = check_evidence(evidence, expected_nonce=nonce)
    if not check.ok:
        raise SystemExit(f"the server's evidence does not check: {check.error}")
    return PinnedKeys.from_binding(evidence.binding)


# The sides of the embedded-engine comparison, in their first order.
KINDS: Final = ("direct", "served", "hpke", "httpx")
KIND_LABELS: Final = {
    "direct": "direct llama-cpp-python",
    "served": "served, raw client",
    "hpke": "served HPKE, cllm.client",
    "httpx": "served plain, cllm.client",
}


@dataclass
class LlamaResult:
    trials: dict[str, list[Trial]] = field(default_factory=lambda: {k: [] for k in KINDS})
    order: list[str] = field(default_factory=list)
    # CPU seconds per kind of trial, summed over its timed trials: "engine" = the process that
    # runs llama.cpp (direct worker or server), "loop" = the server's main thread (its event
    # loop; llama.cpp runs on other threads), "client" = this process.
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    n_threads: int = 0
    model_id: str = ""
    foreign_cores: list[float] = field(default_factory=list)  # per repetition attempted
    disturbed: int = 0  # repetitions left out because other processes used the CPUs
    quiet: bool = True  # False: no repetition was quiet, the disturbed ones are reported


def keep(
    result: LlamaResult,
    order: list[str],
    trials: dict[str, Trial],
    cpu: dict[str, tuple[float, ...]],
) -> None:
    """Count one repetition: its trials and the CPU (client, engine, loop) they took."""
    for kind, trial in trials.items():
        result.trials[kind].append(trial)
        spent = result.cpu.setdefault(kind, {"engine": 0.0, "loop": 0.0, "client": 0.0})
        spent["client"] += cpu[kind][0]
        spent["engine"] += cpu[kind][1]
        spent["loop"] += cpu[kind][2]
    result.order.append(",".join(order))


def run_llama(args: argparse.Namespace, tmp: Path, model_path: Path, console: Any) -> LlamaResult:
    import httpx

    result = LlamaResult()
    options = ["--model", str(model_path)] if args.model else []
    if args.threads is not None:  # else both sides use os.cpu_count(), cllm serve's default
        options += ["--threads", str(args.threads)]
    if args.stream_interval_ms is not None:  # else cllm serve's default
        options += ["--stream-interval-ms", str(args.stream_interval_ms)]
    server = ServeProcess(tmp, "serve-llama", options)
    direct: DirectEngine | None = None
    try:
        direct = DirectEngine(model_path, args.threads or os.cpu_count() or 1)
        result.n_threads = int(direct.ready["n_threads"])
        health = server.wait_ready()
        model_id = str(health["model"])
        result.model_id = model_id
        messages = [{"role": "user", "content": PROMPT}]
        sampling = {"max_tokens": args.max_tokens, "temperature": 0.0, "seed": SEED}
        direct_options = {"messages": messages, **sampling}
        doc = {
            "model": model_id,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            **sampling,
        }
        body = json.dumps(doc).encode()
        timeout = httpx.Timeout(REQUEST_TIMEOUT)
        with httpx.Client(base_url=server.url, timeout=timeout) as client:
            keys = attested_keys(client)

            def run(kind: str) -> Trial:
                if kind == "direct":
                    return direct.trial(direct_options)
                if kind == "served":
                    return served_trial(server.port, body, keys)
                return client_trial(client, doc, keys, encrypt=kind == "hpke")

            kinds = list(KINDS)
            for kind in kinds:  # warm-up: first-call costs, prompt cache
                run(kind)
            pids = (os.getpid(), server.process.pid, direct.process.pid)
            attempts = 0
            busy: list[tuple[list[str], dict[str, Trial], dict[str, tuple[float, ...]]]] = []
            while len(result.trials["direct"]) < args.repeat and attempts < args.repeat * 4:
                rotation = attempts % len(kinds)
                attempts += 1
                order = kinds[rotation:] + kinds[:rotation]
                trials: dict[str, Trial] = {}
                cpu: dict[str, tuple[float, ...]] = {}
                watch = ForeignLoad(pids)
                for kind in order:
                    engine = direct.process.pid if kind == "direct" else server.process.pid
                    before = (
                        time.process_time(),
                        process_cpu(engine),
                        thread_cpu(server.process.pid),
                    )
                    trials[kind] = run(kind)
                    cpu[kind] = (
                        time.process_time() - before[0],
                        process_cpu(engine) - before[1],
                        thread_cpu(server.process.pid) - before[2],
                    )
                foreign = watch.cores()
                result.foreign_cores.append(round(foreign, 3))
                if foreign > args.quiet:
                    result.disturbed += 1
                    busy.append((order, trials, cpu))
                    if not args.json:
                        console.print(
                            f"  [yellow]repetition disturbed[/yellow] (other processes used "
                            f"{foreign:.2f} cores): repeated"
                        )
                    continue
                keep(result, order, trials, cpu)
                if not args.json:
                    console.print(
                        f"  repetition {len(result.trials['direct'])}/{args.repeat}: "
                        + ", ".join(f"{k} {trials[k].tok_s:.1f} tok/s" for k in kinds)
                    )
            if not result.trials["direct"]:
                # Never quiet: report what was measured, marked as such, rather than nothing.
                result.quiet = False
                for order, trials, cpu in busy:
                    keep(result, order, trials, cpu)
    finally:
        if direct is not None:
            direct.stop()
        server.stop()
    return result
