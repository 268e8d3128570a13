"""bench/serve.py, measurement 3: ``cllm serve --engine openai`` as a gateway in front of a
fast upstream."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from _procs import HOST, process_cpu
from _serve_client import RawConnection
from _serve_procs import (
    CHAT_PATH,
    SCRIPT,
    UPSTREAM_MODEL,
    ForeignLoad,
    ServeProcess,
    read_line,
    stop_process,
    worker_process,
)
from _serve_workers import run_loop


@dataclass
class GatewayRound:
    tokens: int
    wall: float
    server_cpu: float
    upstream_cpu: float
    client_cpu: float
    errors: list[str]
    foreign_cores: float = 0.0

    @property
    def tok_s(self) -> float:
        return self.tokens / self.wall if self.wall else 0.0


TOKEN_MARK: Final = b'"delta":{"content":"'
EMPTY_MARK: Final = b'"delta":{"content":""'


async def gateway_stream(connection: RawConnection, request: bytes, expected: int) -> int:
    """One streamed answer: its content events counted (a substring test per event, cheaper
    than decoding JSON), its end checked (usage with ``expected`` tokens, signature, [DONE])."""
    tokens = 0
    buffer = b""
    last = b""
    async for status, data in connection.stream(request):
        if status != 200:
            raise ConnectionError(f"HTTP {status}: {data[:200]!r}")
        buffer += data
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            if TOKEN_MARK in event and EMPTY_MARK not in event:
                tokens += 1
            else:
                last = event if event != b"data: [DONE]" else last
    usage = json.loads(last[5:]) if last.startswith(b"data:") else {}
    if (
        "cllm_signature" not in usage
        or (usage.get("usage") or {}).get("completion_tokens") != expected
    ):
        raise ConnectionError(f"the stream did not end with a signed usage record: {last[:200]!r}")
    if tokens != expected:
        raise ConnectionError(f"{tokens} content events, expected {expected}")
    return tokens


async def gateway_round(
    connections: list[RawConnection],
    request: bytes,
    expected: int,
    server: ServeProcess,
    upstream: subprocess.Popen[bytes],
) -> GatewayRound:
    errors: list[str] = []

    async def one(connection: RawConnection) -> int:
        try:
            return await gateway_stream(connection, request, expected)
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            return 0

    watch = ForeignLoad((os.getpid(), server.process.pid, upstream.pid))
    cpu = (time.process_time(), server.cpu(), process_cpu(upstream.pid))
    started = time.perf_counter()
    counts = await asyncio.gather(*(one(c) for c in connections))
    wall = time.perf_counter() - started
    return GatewayRound(
        foreign_cores=watch.cores(),
        tokens=sum(counts),
        wall=wall,
        server_cpu=server.cpu() - cpu[1],
        upstream_cpu=process_cpu(upstream.pid) - cpu[2],
        client_cpu=time.process_time() - cpu[0],
        errors=errors,
    )


@dataclass
class GatewayResult:
    rounds: list[GatewayRound]  # the quiet rounds (or, when none was quiet, all of them)
    foreign_cores: list[float]  # of every round attempted
    quiet: bool = True


def run_gateway(args: argparse.Namespace, tmp: Path, console: Any) -> GatewayResult:
    upstream = worker_process("upstream", str(args.upstream_batch))
    server: ServeProcess | None = None
    try:
        port = int(read_line(upstream, "upstream")["port"])
        server = ServeProcess(
            tmp,
            "serve-gateway",
            [
                "--engine",
                "openai",
                "--upstream",
                f"http://{HOST}:{port}",
                "--model",
                UPSTREAM_MODEL,
                "--measure",
                str(SCRIPT),
            ],
        )
        server.wait_ready()
        doc = {
            "model": UPSTREAM_MODEL,
            "messages": [{"role": "user", "content": "Count."}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": args.stream_tokens,
        }
        request = RawConnection.encode(CHAT_PATH, json.dumps(doc).encode())
        warm = RawConnection.encode(CHAT_PATH, json.dumps(doc | {"max_tokens": 50}).encode())
        active = server

        async def main() -> GatewayResult:
            connections = [await RawConnection.open(active.port) for _ in range(args.streams)]
            rounds: list[GatewayRound] = []
            busy: list[GatewayRound] = []
            foreign: list[float] = []
            try:
                await gateway_round(connections, warm, 50, active, upstream)  # warm-up
                attempts = 0
                while len(rounds) < args.rounds and attempts < args.rounds * 4:
                    attempts += 1
                    result = await gateway_round(
                        connections, request, args.stream_tokens, active, upstream
                    )
                    foreign.append(round(result.foreign_cores, 3))
                    if result.errors:
                        rounds.append(result)
                        break
                    if result.foreign_cores > args.quiet:
                        busy.append(result)
                        if not args.json:
                            console.print(
                                f"  [yellow]round disturbed[/yellow] ({result.tok_s:,.0f} tok/s; "
                                f"other processes used {result.foreign_cores:.2f} cores): repeated"
                            )
                        continue
                    rounds.append(result)
                    if not args.json:
                        console.print(
                            f"  round {len(rounds)}/{args.rounds}: {result.tok_s:,.0f} tok/s "
                            f"({result.tokens:,} tokens in {result.wall:.2f} s)"
                        )
            finally:
                for connection in connections:
                    await connection.close()
            if not rounds:  # never quiet: report the disturbed rounds, marked as such
                return GatewayResult(busy, foreign, quiet=False)
            return GatewayResult(rounds, foreign)

        result: GatewayResult = run_loop(main())
    finally:
        if server is not None:
            server.stop()
        if upstream.stdin is not None:
            upstream.stdin.close()
        stop_process(upstream)
    return result
