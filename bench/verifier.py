"""Benchmark: throughput and latency of the attestation service's ``POST /v1/attestation``.

The service runs as in production, in its own process (``cllm verifier serve``, uvicorn, one
worker), on a free port of 127.0.0.1, with a temporary state directory. It trusts the root of a
simulated TD world made for the run, and the evidence carries its (simulated) collateral, so
nothing leaves the machine: ``--pccs-url`` points at a closed port that is never reached. Every
request is a full verification (evidence checks, DCAP quote with its collateral, policy) and a
signed ES256 token. The verdict is ``warning`` (simulated evidence), which the script checks once
against the served JWKS before the load.

Load: ``--clients`` (default 32) concurrent clients in one asyncio loop in this process
(``httpx.AsyncClient`` with a pool of as many connections, keep-alive; or, with
``--client raw``, one minimal HTTP/1.1 keep-alive connection per client), each posting
``{"evidence": ..., "nonce": hex, "policy": "default"}`` back to back (closed loop). A few
evidence/nonce pairs (``--pairs``) are built beforehand and used in turn; request bodies are
serialised once. After ``--warmup`` requests (not counted), either ``--requests`` requests run
(default 3000) or, with ``--seconds``, as many as fit. Latency is the ``perf_counter`` time of
each request seen by its client; throughput is completed requests / wall time of the measured
phase. Any non-200 response or transport error fails the run (exit 1).

The load generator shares the machine's cores with the server: on a small machine its CPU time is
part of what limits the numbers (httpx needs more CPU per request than the server does). The
output shows both processes' CPU time per request. With a closed loop, mean latency is
clients / throughput (Little's law), so p99 < 50 ms with 32 clients needs well over 640
requests/s.

With ``--in-process`` there is no server and no HTTP: the same requests go straight through
the service's ASGI app in this process, one after the other, and the script reports the CPU time
per request of the application alone (what the verifier's own code costs, without uvicorn and
the sockets); ``--pairs`` many distinct evidence documents are sent in turn.

With ``--workers 1,2`` (a list) the script compares worker counts side by side in one run:
``--rounds`` rounds, each starting a fresh server for every count in turn (so the machine's
drift hits every count alike), and reports each count's runs and medians.

Usage: ``python bench/verifier.py [--json] [--clients N] [--requests N | --seconds S]
[--warmup N] [--pairs N] [--client httpx|raw] [--workers N | --workers N,M --rounds R]
[--in-process]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from starlette.types import Message

from _procs import HOST, cllm_command, free_port, process_tree_cpu
from cllm.evidence import Binding, build_evidence
from cllm.measure import Event, EventLog
from cllm.tee import SimulatedTdBackend, load_simulated_world, rtmr3_extender
from cllm.tee._simulated import SimulatedWorld
from cllm.token import verify_token
from cllm.verifier import VerifierSettings, create_app, load_state

PATH = "/v1/attestation"
START_TIMEOUT = 30.0  # seconds for the server to answer /healthz
REQUEST_TIMEOUT = 30.0
MAX_REQUESTS = 1_000_000  # bound on --seconds runs
GOAL_RPS = 300.0
GOAL_P99_MS = 50.0


@dataclass
class Phase:
    """What one phase of load produced."""

    latencies: list[float] = field(default_factory=list)  # seconds, completed requests
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0


def make_body(world: SimulatedWorld) -> bytes:
    """One request body: simulated evidence with fresh throwaway keys bound to a fresh nonce,
    and the simulated collateral (built the way tests/verifier/test_app.py does)."""
    backend = SimulatedTdBackend(world)
    log = EventLog(rtmr3_extender(backend))
    for kind in ("package", "model", "config"):
        log.append(Event(rtmr=3, type=f"cllm.{kind}", name=kind, digest=bytes([len(kind)]) * 48))
    nonce = secrets.token_bytes(32)
    evidence = build_evidence(
        backend,
        tee="simulated-tdx",
        binding=Binding.with_throwaway_keys(nonce),
        events=log.events(),
        collateral=world.collateral(),
    )
    request = {"evidence": evidence.to_json(), "nonce": nonce.hex(), "policy": "default"}
    return json.dumps(request).encode()


class Server:
    """``cllm verifier serve`` in a subprocess, stopped on exit."""

    def __init__(self, state_dir: Path, root_ca: Path, *, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = state_dir / "server.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                *cllm_command(),
                "verifier",
                "serve",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--trust-simulated-root",
                str(root_ca),
                "--state-dir",
                str(state_dir / "verifier"),
                "--pccs-url",
                "http://127.0.0.1:9",  # never reached: the evidence carries its collateral
                "--workers",
                str(workers),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    self.fail(f"server exited with code {self.process.returncode}")
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        self.fail(f"server did not answer /healthz within {START_TIMEOUT:.0f} s")

    def fail(self, message: str) -> None:
        self.stop()
        log = self.log_path.read_text(errors="replace")
        raise SystemExit(f"{message}\n--- server output ---\n{log}")

    def cpu(self) -> float:
        return process_tree_cpu(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def check_token(url: str, body: bytes) -> str:
    """One request outside the measurement: the token verifies under the served JWKS, and its
    status is returned (``warning`` for simulated evidence)."""
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        jwks = client.get("/.well-known/jwks.json").json()
        response = client.post(PATH, content=body, headers={"content-type": "application/json"})
        if response.status_code != 200:
            raise SystemExit(f"POST {PATH}: HTTP {response.status_code}: {response.text[:500]}")
        claims = verify_token(response.json()["token"], jwks=jwks, now=int(time.time()))
    status: str = claims["status"]
    return status


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client on one connection: request bytes encoded once, the
    response read by its Content-Length. It costs the load generator far less CPU than httpx."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    @staticmethod
    def encode(body: bytes) -> bytes:
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self._writer.write(request)
        await self._writer.drain()
        status_line = await self._reader.readline()
        parts = status_line.split(maxsplit=2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ConnectionError(f"bad status line {status_line[:80]!r}")
        length = None
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise ConnectionError("response without Content-Length")
        return int(parts[1]), await self._reader.readexactly(length)

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


async def run_phase(
    server: Server,
    bodies: list[bytes],
    *,
    clients: int,
    requests: int,
    seconds: float | None,
    client_kind: str,
) -> Phase:
    """``clients`` closed-loop clients share ``requests`` requests (or run for ``seconds``)."""
    phase = Phase()
    issued = 0
    deadline = math.inf
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    timeout = httpx.Timeout(REQUEST_TIMEOUT)
    raw_requests = [RawConnection.encode(body) for body in bodies]

    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=timeout) as client:

        async def post_httpx(index: int) -> tuple[int, bytes]:
            response = await client.post(PATH, content=bodies[index], headers=headers)
            return response.status_code, response.content

        async def worker() -> None:
            nonlocal issued
            raw = await RawConnection.open(server.port) if client_kind == "raw" else None
            try:
                while issued < requests and time.perf_counter() < deadline:
                    index = issued % len(bodies)
                    issued += 1
                    started = time.perf_counter()
                    try:
                        async with asyncio.timeout(REQUEST_TIMEOUT):
                            if raw is None:
                                status, content = await post_httpx(index)
                            else:
                                status, content = await raw.send(raw_requests[index])
                    except (httpx.HTTPError, OSError, TimeoutError, ValueError) as exc:
                        phase.errors.append(f"{type(exc).__name__}: {exc}")
                        if raw is not None:  # the connection is in an unknown state
                            await raw.close()
                            raw = await RawConnection.open(server.port)
                        continue
                    except asyncio.IncompleteReadError as exc:
                        phase.errors.append(f"connection closed: {exc}")
                        return
                    elapsed = time.perf_counter() - started
                    if status == 200:
                        phase.latencies.append(elapsed)
                    else:
                        phase.errors.append(f"HTTP {status}: {content[:200]!r}")
            finally:
                if raw is not None:
                    await raw.close()

        cpu_client, cpu_server = time.process_time(), server.cpu()
        started = time.perf_counter()
        if seconds is not None:
            deadline = started + seconds
        await asyncio.gather(*(worker() for _ in range(clients)))
        phase.wall = time.perf_counter() - started
        phase.client_cpu = time.process_time() - cpu_client
        phase.server_cpu = server.cpu() - cpu_server
    return phase


def in_process_cpu(
    state_dir: Path, world: SimulatedWorld, bodies: list[bytes], args: argparse.Namespace
) -> dict[str, Any]:
    """CPU time per request of the service's ASGI app driven directly, without HTTP: the
    attestations run one after the other on this process's event loop."""
    settings = VerifierSettings(
        state_dir=state_dir / "verifier",
        trust_simulated_root=world.root_ca_path,
        pccs_url="http://127.0.0.1:9",  # never reached: the evidence carries its collateral
    )
    app = create_app(load_state(settings))
    statuses: list[int] = []

    async def request(body: bytes) -> None:
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if delivered:  # the app never asks twice; a disconnect if it did
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(int(message["status"]))

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": PATH,
            "raw_path": PATH.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", HOST.encode()),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": (HOST, 1),
            "server": (HOST, 8081),
        }
        await app(scope, receive, send)

    async def run(count: int) -> float:
        started = time.process_time()
        for index in range(count):
            await request(bodies[index % len(bodies)])
        return time.process_time() - started

    asyncio.run(run(args.warmup))
    statuses.clear()
    cpu = asyncio.run(run(args.requests))
    errors = sum(status != 200 for status in statuses)
    return {
        "in_process_cpu_ms_per_request": round(cpu / args.requests * 1000, 3),
        "requests": args.requests,
        "errors": errors,
        "pairs": len(bodies),
        "warmup": args.warmup,
        "body_bytes": len(bodies[0]),
        "python": platform.python_version(),
    }


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarise(
    phase: Phase, args: argparse.Namespace, body_bytes: int, status: str
) -> dict[str, Any]:
    latencies = sorted(phase.latencies)
    done = len(latencies)
    rps = done / phase.wall if phase.wall else 0.0
    # With no completed request there is no latency: null in JSON (never NaN, not JSON).
    p50 = percentile(latencies, 50) * 1000 if done else math.inf
    p99 = percentile(latencies, 99) * 1000 if done else math.inf
    return {
        "rps": round(rps, 1),
        "p50_ms": round(p50, 2) if done else None,
        "p99_ms": round(p99, 2) if done else None,
        "mean_ms": round(sum(latencies) / done * 1000, 2) if done else None,
        "max_ms": round(latencies[-1] * 1000, 2) if done else None,
        "requests": done,
        "errors": len(phase.errors),
        "clients": args.clients,
        "client": args.client,
        "warmup": args.warmup,
        "wall_s": round(phase.wall, 3),
        "server_cpu_ms_per_request": round(phase.server_cpu / done * 1000, 3) if done else None,
        "client_cpu_ms_per_request": round(phase.client_cpu / done * 1000, 3) if done else None,
        "body_bytes": body_bytes,
        "verdict": status,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        # The goal is stated for 32 clients; other client counts measure something else.
        "goal_met": rps >= GOAL_RPS and p99 < GOAL_P99_MS if args.clients == 32 else None,
    }


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_table(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"POST {PATH}, {result['clients']} clients ({result['client']}), loopback")
    table.add_column("requests/s", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("mean ms", justify="right")
    table.add_column("max ms", justify="right")
    table.add_column("requests", justify="right")
    table.add_column("errors", justify="right")
    table.add_row(
        f"{result['rps']:.1f}",
        ms(result["p50_ms"]),
        ms(result["p99_ms"]),
        ms(result["mean_ms"]),
        ms(result["max_ms"]),
        str(result["requests"]),
        str(result["errors"]),
    )
    console.print(table)
    console.print(
        f"wall {result['wall_s']:.2f} s after {result['warmup']} warm-up requests; "
        f"body {result['body_bytes'] / 1000:.0f} kB; verdict {result['verdict']!r}; "
        f"CPU per request: server {result['server_cpu_ms_per_request']} ms, "
        f"load generator {result['client_cpu_ms_per_request']} ms "
        f"(both share {result['cpus']} CPUs)"
    )
    if result["goal_met"] is not None:
        goal = f"goal at 32 clients (>= {GOAL_RPS:.0f} requests/s, p99 < {GOAL_P99_MS:.0f} ms)"
        console.print(f"{goal}: {'[green]met' if result['goal_met'] else '[red]not met'}")


def _worker_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers") from exc
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("worker counts must be >= 1")
    return counts


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument(
        "--workers",
        type=_worker_counts,
        default=(1,),
        help="server worker processes (1); a list (1,2) compares them side by side",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="with a list of worker counts: rounds (3)"
    )
    parser.add_argument("--requests", type=int, default=3000, help="measured requests (3000)")
    parser.add_argument("--seconds", type=float, help="measure for this long instead")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests first (200)")
    parser.add_argument("--pairs", type=int, default=4, help="evidence/nonce pairs to rotate (4)")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="no server: drive the ASGI app directly and report its CPU time per request",
    )
    parser.add_argument(
        "--client",
        choices=("httpx", "raw"),
        default="raw",
        help="load generator: a minimal HTTP/1.1 client that leaves the CPU to the server "
        "(default), or httpx.AsyncClient (itself CPU-bound at 32 clients on 2 cores)",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.clients < 1 or args.requests < 1 or args.warmup < 0 or args.pairs < 1:
        parser.error("--clients, --requests and --pairs must be >= 1, --warmup >= 0")
    if args.seconds is not None and not 0 < args.seconds <= 600:
        parser.error("--seconds must be in (0, 600]")
    return args


def main() -> int:
    args = parse_args()
    console = Console(stderr=args.json)
    # "simulated TD in use" once per evidence: known, and the verdict shown says so.
    logging.getLogger("cllm.tee").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="cllm-bench-verifier-") as tmp:
        state_dir = Path(tmp)
        world = load_simulated_world(state_dir / "td", clock=time.time)
        bodies = [make_body(world) for _ in range(args.pairs)]
        if args.in_process:
            measured = in_process_cpu(state_dir, world, bodies, args)
            if args.json:
                print(json.dumps(measured))
            else:
                console.print(
                    f"in-process CPU per request: {measured['in_process_cpu_ms_per_request']} ms "
                    f"({measured['requests']} requests after {measured['warmup']} warm-up, "
                    f"{measured['pairs']} distinct evidence documents, "
                    f"{measured['errors']} errors)"
                )
            return 1 if measured["errors"] else 0
        if len(args.workers) > 1:
            return compare_workers(args, state_dir, world, bodies, console)
        result, phase = measure(args, state_dir, world, bodies, workers=args.workers[0])
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result, console)
    if phase.errors:
        console.print(f"[red]{len(phase.errors)} failed requests[/red], first: {phase.errors[0]}")
        return 1
    return 0


def measure(
    args: argparse.Namespace,
    state_dir: Path,
    world: SimulatedWorld,
    bodies: list[bytes],
    *,
    workers: int,
) -> tuple[dict[str, Any], Phase]:
    """One server with ``workers`` processes: warm-up, then the measured phase."""
    server = Server(state_dir, world.root_ca_path, workers=workers)
    try:
        server.wait_ready()
        status = check_token(server.url, bodies[0])
        if args.warmup:
            warm = asyncio.run(
                run_phase(
                    server,
                    bodies,
                    clients=args.clients,
                    requests=args.warmup,
                    seconds=None,
                    client_kind=args.client,
                )
            )
            if warm.errors:
                raise SystemExit(f"{len(warm.errors)} errors in warm-up: {warm.errors[0]}")
        phase = asyncio.run(
            run_phase(
                server,
                bodies,
                clients=args.clients,
                requests=MAX_REQUESTS if args.seconds is not None else args.requests,
                seconds=args.seconds,
                client_kind=args.client,
            )
        )
    finally:
        server.stop()
    result = summarise(phase, args, len(bodies[0]), status)
    result["workers"] = workers
    return result, phase


def compare_workers(
    args: argparse.Namespace,
    state_dir: Path,
    world: SimulatedWorld,
    bodies: list[bytes],
    console: Console,
) -> int:
    """Every worker count in turn, ``--rounds`` times; each count's runs and medians."""
    load_before = os.getloadavg()
    runs: dict[int, list[dict[str, Any]]] = {count: [] for count in args.workers}
    failed = 0
    for _ in range(args.rounds):
        for count in args.workers:
            result, phase = measure(args, state_dir, world, bodies, workers=count)
            runs[count].append(result)
            failed += len(phase.errors)
    keys = ("rps", "p50_ms", "p99_ms", "server_cpu_ms_per_request")
    summary = {
        str(count): {
            "median": {
                key: statistics.median(r[key] for r in results if r[key] is not None)
                for key in keys
            },
            "runs": [{key: r[key] for key in (*keys, "errors")} for r in results],
        }
        for count, results in runs.items()
    }
    doc = {
        "workers": summary,
        "rounds": args.rounds,
        "clients": args.clients,
        "requests": args.requests,
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }
    if args.json:
        print(json.dumps(doc))
    else:
        table = Table(title=f"POST {PATH}, {args.clients} clients, {args.rounds} rounds")
        for column in ("workers", "requests/s (runs)", "median p50 ms", "median p99 ms"):
            table.add_column(column, justify="right")
        for count, entry in summary.items():
            rates = ", ".join(f"{run['rps']:.0f}" for run in entry["runs"])
            median = entry["median"]
            table.add_row(count, rates, f"{median['p50_ms']:.2f}", f"{median['p99_ms']:.2f}")
        console.print(table)
        console.print(f"load average before {doc['load_before']}, after {doc['load_after']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
