"""Benchmark: the inference server ``cllm serve`` against calling its engine directly, and its
capacity as a gateway in front of an OpenAI-compatible upstream.

Three measurements in one run, everything on 127.0.0.1:

1. **Embedded engine** (llama-cpp, the packaged SmolLM2-135M-Instruct GGUF unless ``--model``).
   *Direct*: a worker process of this script loads ``llama_cpp.Llama(model_path, n_ctx=4096,
   n_threads=os.cpu_count(), verbose=False)`` and calls ``create_chat_completion(...,
   stream=True)``, timing every streamed content chunk. *Served*: ``cllm serve --tee simulated``
   in its own process with the same model, threads and context (and its default
   ``--stream-interval-ms`` unless one is given), and the lightest client there
   is in this process (a blocking socket, one timed ``recv`` per wake-up, events decoded after
   the answer) timing every SSE event that carries content. Same prompt, same sampling
   (temperature 0, fixed seed) and ``max_tokens``; the script checks that every side generates
   ``max_tokens`` tokens and the same text. tokens/s = tokens (direct: content chunks, one per
   token; served: the usage record's count, as an event may carry several tokens) / (time of
   the last content chunk or event - request start); TTFT = time of the first one - request
   start. Trials interleave (direct,
   served, sealed, and plain through the project's client; the order rotates every repetition)
   so machine noise hits all sides alike; one untimed warm-up each first; medians are reported.
   A repetition during which other processes kept more than ``--quiet`` CPUs busy (from
   /proc/stat, minus this benchmark's processes) is left out and repeated.
2. **Sealed** (HPKE): the served measurement again, with keys taken from
   ``GET /v1/attestation/report?nonce=`` (``parse_evidence`` + ``check_evidence``), the request
   sealed and the answer opened record by record by the project's own client
   (``cllm.client.post(..., encrypt=True)`` on ``httpx.Client``), its signature checked. The
   same client with ``encrypt=False`` is a fourth side, to tell the cost of the client stack
   from that of the encryption.
3. **Gateway**: a bench-only upstream (a raw asyncio HTTP/1.1 server in a worker process of this
   script) streams ``data: {chat.completion.chunk}`` events as fast as it can, each event its own
   HTTP chunk, several per socket write; ``cllm serve --engine openai`` proxies it; ``--streams``
   (64) concurrent streaming requests of ``--stream-tokens`` (2000) tokens each go through it for
   ``--rounds`` rounds, from a raw asyncio client in this process that counts content events and
   checks each answer's usage and ``[DONE]``. Throughput = all content events / round wall time;
   CPU seconds per token of the three processes come from /proc and ``time.process_time``.

Usage: ``python bench/serve.py [--json] [--repeat N] [--max-tokens N] [--model PATH.gguf]
[--threads N] [--streams N] [--stream-tokens N] [--rounds N] [--upstream-batch N]
[--quiet CPUS] [--only llama|gateway] [--stream-interval-ms MS]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from _serve_gateway import GatewayResult, GatewayRound, run_gateway
from _serve_llama import LlamaResult, run_llama
from _serve_report import print_report, summarise
from _serve_workers import direct_worker, upstream_worker


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=30, help="interleaved repetitions (30)")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per answer (128)")
    parser.add_argument("--model", help="a GGUF file (default: the packaged SmolLM2-135M)")
    parser.add_argument("--streams", type=int, default=64, help="gateway: concurrent streams")
    parser.add_argument(
        "--stream-tokens", type=int, default=2000, help="gateway: tokens per stream (2000)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="gateway: measured rounds (3)")
    parser.add_argument(
        "--upstream-batch",
        type=int,
        default=16,
        help="gateway: events the upstream writes per socket write (16)",
    )
    parser.add_argument("--only", choices=("llama", "gateway"), help="run one part only")
    parser.add_argument(
        "--stream-interval-ms",
        type=float,
        help="passed to cllm serve (default: its default; 0 sends every token alone)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="llama.cpp threads on both sides (default: os.cpu_count(), as cllm serve)",
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.05,
        help="a repetition or round during which other processes kept more than this many "
        "CPUs busy is repeated (0.05)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("worker_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is None and args.worker_args:
        parser.error(f"unexpected arguments {args.worker_args}")
    if min(args.repeat, args.max_tokens, args.streams, args.stream_tokens, args.rounds) < 1:
        parser.error("counts must be >= 1")
    if args.upstream_batch < 1:
        parser.error("--upstream-batch must be >= 1")
    return args


def main() -> int:
    args = parse_args()
    if args.worker == "direct":
        return direct_worker(args.worker_args[0], int(args.worker_args[1]))
    if args.worker == "upstream":
        return upstream_worker(int(args.worker_args[0]))
    from rich.console import Console

    from cllm.engine import default_model_path

    # Wide enough for the table when the output is not a terminal (``make bench``, logs).
    console = Console(stderr=args.json, width=None if sys.stdout.isatty() else 120)
    logging.getLogger("cllm.tee").setLevel(logging.ERROR)
    model_path = Path(args.model) if args.model else default_model_path()
    llama: LlamaResult | None = None
    rounds: list[GatewayRound] | None = None
    gateway: GatewayResult | None = None
    with tempfile.TemporaryDirectory(prefix="cllm-bench-serve-") as tmp:
        if args.only in (None, "llama"):
            if not args.json:
                console.print(f"embedded engine: {model_path.name}, {args.repeat} repetitions")
            llama = run_llama(args, Path(tmp), model_path, console)
        if args.only in (None, "gateway"):
            if not args.json:
                console.print(
                    f"gateway: {args.streams} streams x {args.stream_tokens} tokens, "
                    f"{args.rounds} rounds"
                )
            gateway = run_gateway(args, Path(tmp), console)
            rounds = gateway.rounds
    result = summarise(llama, rounds, args)
    if gateway is not None:
        result["gateway_machine_quiet"] = gateway.quiet
        result["gateway_foreign_cores"] = gateway.foreign_cores
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result, console)
    if rounds and any(r.errors for r in rounds):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
