"""Benchmark: attestations per second from ``cllm serve`` when quotes cost what real hardware
makes them cost, batched (one quote per batch of nonces, evidence version 2) against unbatched
(one quote per nonce), with and without one client flooding the admission queue.

For each simulated quote cost (``--costs``, default 39 ms, Google Cloud's measured serial
quote, and 1,000 ms, the stock Linux configfs-tsm driver's one-second poll), in one run:

1. **batched**: ``cllm serve --tee simulated`` with ``CLLM_SIM_QUOTE_MS`` set to the cost and
   its default admission (batches of up to 1,024, 2 ms batch wait, 4 pending per client);
   ``--clients`` closed-loop clients (one keep-alive connection each, each from its own loopback
   address, so each is its own client for fair admission) ask for evidence for fresh nonces as
   fast as answers come, for ``--seconds``.
2. **batched + flood**: the same server and clients, plus one flooding client (its own address
   and process, ``--flood-connections`` connections asking at full speed, never waiting on a
   refusal).
3. **unbatched**: a server started with ``--attest-batch-max 1`` (one quote per nonce), and
   ``--unbatched-clients`` clients (more would only queue: the quote slot is the limit).

Every answer is checked: HTTP 200 carries evidence for the asking client's nonce; a sample of
the documents (``--check-every``) goes through ``parse_evidence`` and ``check_batch`` (the quote
binds the batch root and keys, the nonce's inclusion proof leads to the root). Reported per
phase: attestations/s (answers with evidence / phase time), p50 and p99 latency over all
well-behaved clients' requests and the spread of per-client p50/p99, batches made (server
log), the flooder's answers, refusals (429) and share of all attestations. Goals (issue 19):
at 39 ms >= 1,000/s with p99 < 150 ms and >= 40x unbatched; at 1,000 ms >= 500/s with p99 <
2.5 s; the other clients' p50/p99 within 20% while one client floods.

Usage: ``python bench/attest.py [--json] [--costs 39,1000] [--clients N] [--clients-slow N]
[--seconds S] [--flood-connections N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _procs import HOST, bytecode_env, free_port

_LAUNCH = "import sys; from cllm.cli import main; sys.exit(main())"
BATCH_WAIT_MS: float | None = None  # --batch-wait-ms: else the server's default


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(tmp: Path, *, cost_ms: float, batch_max: int | None, name: str) -> Server:
    port = free_port()
    log = tmp / f"{name}.log"
    command = [
        sys.executable,
        "-c",
        _LAUNCH,
        "serve",
        "--tee",
        "simulated",
        "--state-dir",
        str(tmp / "state"),
        "--port",
        str(port),
        "--threads",
        "1",
        *(["--attest-batch-max", str(batch_max)] if batch_max is not None else []),
    ]
    env = {
        **os.environ,
        **bytecode_env(tmp / f"{name}-pycache"),
        "CLLM_SIM_QUOTE_MS": str(cost_ms),
        "CLLM_SIM_QUOTE_POLL_MS": "0",
    }
    if BATCH_WAIT_MS is not None:
        env["CLLM_SERVE_ATTEST_BATCH_WAIT_MS"] = str(BATCH_WAIT_MS)
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(process, port, log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"cllm serve exited:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"http://{HOST}:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise SystemExit("cllm serve did not become healthy")


@dataclass
class ClientStats:
    address: str
    latencies: list[float] = field(default_factory=list)  # seconds, answers with evidence
    refused: int = 0  # 429
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    stale_connections: int = 0  # idle keep-alive connections the server had closed

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    samples: list[tuple[bytes, bytes]] = field(default_factory=list)  # (nonce, body)


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int, nonce: bytes
) -> tuple[int, bytes]:
    writer.write(
        f"GET /v1/attestation/report?nonce={nonce.hex()} HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    return status, body


async def _client(
    stats: ClientStats, port: int, stop_at: float, *, check_every: int, flood: bool
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port, local_addr=(stats.address, 0))
    count = 0
    try:
        while time.monotonic() < stop_at:
            nonce = os.urandom(32)
            started = time.monotonic()
            status, body = await _request(reader, writer, port, nonce)
            elapsed = time.monotonic() - started
            if status == 200 and nonce.hex().encode() in body:
                if time.monotonic() <= stop_at:
                    stats.latencies.append(elapsed)
                count += 1
                if check_every and count % check_every == 1 and len(stats.samples) < 4:
                    stats.samples.append((nonce, body))
            elif status == 429:
                stats.refused += 1
                if not flood:
                    await asyncio.sleep(1.0)  # a well-behaved client honours Retry-After
            else:
                stats.error(f"HTTP {status}")
    except (OSError, asyncio.IncompleteReadError) as exc:
        stats.error(type(exc).__name__)
    finally:
        writer.close()


async def _open_client(
    stats: ClientStats, port: int, stop_at: float, *, rate: float, pool: int, check_every: int
) -> None:
    """Open loop: requests at Poisson times (``rate`` per second), each on a free keep-alive
    connection of this client's own (at most ``pool``: its admission share), latency counted
    from the time the request was due, so time spent waiting for a connection counts too."""
    rng = random.Random(os.urandom(8))
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened = 0
    free = asyncio.Semaphore(pool)
    count = 0

    async def one(due: float) -> None:
        nonlocal opened, count
        async with free:
            reused = bool(idle)
            if reused:
                reader, writer = idle.pop()
            else:
                reader, writer = await asyncio.open_connection(
                    HOST, port, local_addr=(stats.address, 0)
                )
                opened += 1
            nonce = os.urandom(32)
            try:
                status, body = await _request(reader, writer, port, nonce)
            except (OSError, asyncio.IncompleteReadError) as exc:
                writer.close()
                if not reused:
                    stats.error(type(exc).__name__)
                    return
                # The server closed this idle keep-alive connection (its keep-alive timeout)
                # as we sent: what any HTTP client does then, ask again on a new one.
                stats.stale_connections += 1
                try:
                    reader, writer = await asyncio.open_connection(
                        HOST, port, local_addr=(stats.address, 0)
                    )
                    status, body = await _request(reader, writer, port, nonce)
                except (OSError, asyncio.IncompleteReadError) as again:
                    stats.error(type(again).__name__)
                    writer.close()
                    return
            idle.append((reader, writer))
        if status == 200 and nonce.hex().encode() in body:
            stats.latencies.append(time.monotonic() - due)
            count += 1
            if check_every and count % check_every == 1 and len(stats.samples) < 4:
                stats.samples.append((nonce, body))
        elif status == 429:
            stats.refused += 1
        else:
            stats.error(f"HTTP {status}")

    tasks = []
    due = time.monotonic() + rng.expovariate(rate)
    while due < stop_at:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tasks.append(asyncio.create_task(one(due)))
        due += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()


def _address(group: int, index: int) -> str:
    return f"127.{group}.{index // 250}.{index % 250 + 1}"


def _check_samples(stats: list[ClientStats]) -> int:
    from cllm.evidence import check_batch, parse_evidence

    checked = 0
    for client in stats:
        for nonce, body in client.samples:
            check_batch(parse_evidence(body), expected_nonce=nonce)  # raises if not
            checked += 1
    return checked


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _phase(
    port: int,
    *,
    pid: int,
    clients: int,
    seconds: float,
    flood: int,
    check_every: int,
    group: int,
    rate: float = 0.0,
) -> dict[str, Any]:
    stop_at = time.monotonic() + seconds
    normal = [ClientStats(_address(group, i)) for i in range(clients)]
    flooder = ClientStats(_address(group + 100, 0))
    if rate:
        tasks = [
            asyncio.create_task(
                _open_client(s, port, stop_at, rate=rate / clients, pool=4, check_every=check_every)
            )
            for s in normal
        ]
    else:
        tasks = [
            asyncio.create_task(_client(s, port, stop_at, check_every=check_every, flood=False))
            for s in normal
        ]
    flood_process = None
    if flood:
        # The flooder is another process (another machine, in life): its own CPU, not ours.
        flood_process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker-flood",
            json.dumps([port, flooder.address, flood, seconds]),
            stdout=asyncio.subprocess.PIPE,
        )
    started = time.monotonic()
    server_cpu, own_cpu = process_cpu(pid), time.process_time()
    await asyncio.gather(*tasks)
    if flood_process is not None:
        out, _ = await flood_process.communicate()
        flooded = json.loads(out)
        flooder.latencies, flooder.refused = flooded["latencies"], flooded["refused"]
        flooder.errors = flooded["errors"]
        flooder.error_kinds = flooded["error_kinds"]
    wall = max(time.monotonic() - started, seconds)
    server_cpu, own_cpu = process_cpu(pid) - server_cpu, time.process_time() - own_cpu
    everyone = [lat for s in normal for lat in s.latencies]
    per_client = [s for s in normal if s.latencies]
    p50s = [_pct(s.latencies, 0.5) or 0.0 for s in per_client]
    p99s = [_pct(s.latencies, 0.99) or 0.0 for s in per_client]
    total = len(everyone) + len(flooder.latencies)
    doc: dict[str, Any] = {
        "load": f"open loop, {rate:g}/s offered" if rate else "closed loop",
        "clients": clients,
        "seconds": round(wall, 2),
        "attestations_per_s": round(total / seconds, 1),
        "p50_ms": _round(_pct(everyone, 0.5)),
        "p99_ms": _round(_pct(everyone, 0.99)),
        "per_client_p50_ms": _spread(p50s),
        "per_client_p99_ms": _spread(p99s),
        "clients_served": len(per_client),
        "clients_refused": sum(s.refused for s in normal),
        "errors": sum(s.errors for s in normal) + flooder.errors,
        "error_kinds": _kinds([*normal, flooder]),
        "stale_connections_retried": sum(s.stale_connections for s in normal),
        "checked_documents": _check_samples(normal),
        "server_cpu_s": round(server_cpu, 2),
        "client_cpu_s": round(own_cpu, 2),
        "server_cpu_ms_per_request": round(
            server_cpu * 1000 / max(1, total + flooder.refused + sum(s.refused for s in normal)), 3
        ),
    }
    if flood:
        doc["flooder"] = {
            "connections": flood,
            "attestations": len(flooder.latencies),
            "refused_429": flooder.refused,
            "share_of_attestations": round(len(flooder.latencies) / total, 4) if total else None,
            "p50_ms": _round(_pct(flooder.latencies, 0.5)),
            "p99_ms": _round(_pct(flooder.latencies, 0.99)),
        }
    return doc


def flood_worker(spec: str) -> int:
    port, address, connections, seconds = json.loads(spec)
    stats = ClientStats(address)

    async def run() -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(
            *(_client(stats, port, stop_at, check_every=0, flood=True) for _ in range(connections))
        )

    asyncio.run(run())
    doc = {
        "latencies": stats.latencies,
        "refused": stats.refused,
        "errors": stats.errors,
        "error_kinds": stats.error_kinds,
    }
    print(json.dumps(doc))
    return 0


def _kinds(stats: list[ClientStats]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for client in stats:
        for kind, count in client.error_kinds.items():
            kinds[kind] = kinds.get(kind, 0) + count
    return kinds


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "best": round(min(values), 1),
        "median": round(statistics.median(values), 1),
        "worst": round(max(values), 1),
    }


def run_cost(args: argparse.Namespace, tmp: Path, cost: float, console: Any) -> dict[str, Any]:
    slow = cost >= 500
    clients = args.clients_slow if slow else args.clients
    rate = args.rate_slow if slow else args.rate
    capacity_clients = args.capacity_clients_slow if slow else args.capacity_clients
    seconds = args.seconds_slow if slow else args.seconds
    result: dict[str, Any] = {"quote_ms": cost}

    def phase(server: Server, **kwargs: Any) -> dict[str, Any]:
        options = {"seconds": seconds, "flood": 0, "check_every": args.check_every, **kwargs}
        return asyncio.run(_phase(server.port, pid=server.process.pid, **options))

    server = start_server(tmp, cost_ms=cost, batch_max=None, name=f"batched-{cost:g}")
    try:
        phase(server, clients=8, seconds=min(2.0, seconds), check_every=0, group=1)  # warm-up
        console(f"quote {cost:g} ms: batched, {clients} clients, {rate:g}/s offered")
        result["batched"] = phase(server, clients=clients, rate=rate, group=2)
        console(f"quote {cost:g} ms: the same, and one client flooding")
        result["batched_flood"] = phase(
            server, clients=clients, rate=rate, flood=args.flood_connections, group=6
        )
        console(f"quote {cost:g} ms: batched capacity, {capacity_clients} closed-loop clients")
        result["batched_capacity"] = phase(server, clients=capacity_clients, group=20)
    finally:
        server.stop()
    server = start_server(tmp, cost_ms=cost, batch_max=1, name=f"unbatched-{cost:g}")
    try:
        console(f"quote {cost:g} ms: unbatched capacity, {args.unbatched_clients} clients")
        result["unbatched_capacity"] = phase(
            server, clients=args.unbatched_clients, seconds=max(seconds, 5 * cost / 1000), group=40
        )
    finally:
        server.stop()
    batched, flooded = result["batched"], result["batched_flood"]
    capacity, unbatched = result["batched_capacity"], result["unbatched_capacity"]
    per_s = unbatched["attestations_per_s"]
    result["speedup"] = {
        "batched_over_unbatched": round(batched["attestations_per_s"] / per_s, 1)
        if per_s
        else None,
        "capacity_over_unbatched": round(capacity["attestations_per_s"] / per_s, 1)
        if per_s
        else None,
    }
    result["others_while_flooding"] = {
        "p50_ratio": _ratio(flooded["p50_ms"], batched["p50_ms"]),
        "p99_ratio": _ratio(flooded["p99_ms"], batched["p99_ms"]),
    }
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "commit": commit,
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--costs", default="39,1000", help="simulated quote costs, ms")
    parser.add_argument("--clients", type=int, default=200, help="clients, fast quotes")
    parser.add_argument("--rate", type=float, default=1200, help="offered/s, fast quotes")
    parser.add_argument("--clients-slow", type=int, default=1200, help="clients, >= 500 ms quotes")
    parser.add_argument("--rate-slow", type=float, default=600, help="offered/s, slow quotes")
    parser.add_argument("--capacity-clients", type=int, default=256)
    parser.add_argument("--capacity-clients-slow", type=int, default=1000)
    parser.add_argument("--unbatched-clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0, help="per phase, fast quotes")
    parser.add_argument("--seconds-slow", type=float, default=10.0, help="per phase, slow quotes")
    parser.add_argument("--flood-connections", type=int, default=32)
    parser.add_argument("--check-every", type=int, default=50, help="check 1 in N documents")
    parser.add_argument("--batch-wait-ms", type=float, help="the server's batch wait")
    parser.add_argument("--worker-flood", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    if args.worker_flood:
        return flood_worker(args.worker_flood)
    global BATCH_WAIT_MS
    BATCH_WAIT_MS = args.batch_wait_ms

    def console(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    doc: dict[str, Any] = {"machine": machine(), "costs": []}
    with tempfile.TemporaryDirectory(prefix="cllm-bench-attest-") as tmp:
        for cost in (float(c) for c in args.costs.split(",")):
            doc["costs"].append(run_cost(args, Path(tmp), cost, console))
    doc["machine"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for item in doc["costs"]:
            b, f = item["batched"], item["batched_flood"]
            c, u = item["batched_capacity"], item["unbatched_capacity"]
            print(
                f"quote {item['quote_ms']:g} ms: batched {b['attestations_per_s']}/s "
                f"p50 {b['p50_ms']} p99 {b['p99_ms']} ms; capacity {c['attestations_per_s']}/s; "
                f"unbatched {u['attestations_per_s']}/s; flooding: others p50 {f['p50_ms']} "
                f"p99 {f['p99_ms']} ms, flooder share {f['flooder']['share_of_attestations']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
