"""cllm._internal.transport: the connection limits both services run under, tried as a slowloris
attacker would, against a real uvicorn server (in a thread of this process, on loopback).
The services themselves are tried in tests/server/test_serve_transport.py and
tests/verifier/test_verifier_transport.py."""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import httpx
import pytest
import uvicorn
from starlette.types import Message, Receive, Scope, Send

from cllm._internal.transport import (
    MAX_HEAD_BYTES,
    RESERVED_DESCRIPTORS,
    ConcurrencyLimit,
    TransportLimits,
    connection_cap,
    guarded_protocol,
    raise_nofile_limit,
)
from cllm.errors import CllmError
from serving import free_port
from slowloris import Held, healthz_seconds

LIMITS = TransportLimits(
    header_timeout=1.0,
    body_timeout=1.0,
    idle_timeout=0.8,
    max_connections=100,
    max_concurrent_requests=50,
)
# Generous for a loaded 2-core machine; what is asserted is "closed by the timer, not never".
SLACK = 2.5


# --- the descriptor budget ---------------------------------------------------------------------


def test_the_cap_is_what_the_descriptors_leave() -> None:
    assert connection_cap(configured=None, nofile=1024, max_concurrent_requests=256) == (
        1024 - RESERVED_DESCRIPTORS - 256
    )
    assert connection_cap(configured=100, nofile=1024, max_concurrent_requests=256) == 100


def test_a_cap_the_descriptors_cannot_carry_is_refused() -> None:
    with pytest.raises(CllmError) as caught:
        connection_cap(configured=5000, nofile=1024, max_concurrent_requests=256)
    assert caught.value.code == "config_invalid"
    assert "max_connections 5000" in caught.value.message
    with pytest.raises(CllmError) as caught:
        connection_cap(configured=None, nofile=256, max_concurrent_requests=256)
    assert caught.value.code == "config_invalid"
    assert "RLIMIT_NOFILE 256" in caught.value.message


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    set_to: list[tuple[int, int]] = []
    soft = raise_nofile_limit(
        getrlimit=lambda _: (1024, 524288), setrlimit=lambda _, value: set_to.append(value)
    )
    assert set_to == [(65536, 524288)]  # capped: a service that needs more says so
    assert soft == 65536
    set_to.clear()
    assert (
        raise_nofile_limit(
            getrlimit=lambda _: (1024, 4096), setrlimit=lambda _, v: set_to.append(v)
        )
        == 4096
    )
    assert set_to == [(4096, 4096)]
    set_to.clear()
    assert (
        raise_nofile_limit(
            getrlimit=lambda _: (8192, 8192), setrlimit=lambda _, v: set_to.append(v)
        )
        == 8192
    )
    assert set_to == []

    def refuse(_: int, __: tuple[int, int]) -> None:
        raise ValueError("not permitted")

    assert raise_nofile_limit(getrlimit=lambda _: (1024, 4096), setrlimit=refuse) == 1024
    infinite = resource.RLIM_INFINITY
    assert raise_nofile_limit(getrlimit=lambda _: (infinite, infinite), setrlimit=refuse) == 65536


# --- a server under attack ---------------------------------------------------------------------


@dataclass
class Running:
    url: str
    port: int
    release: threading.Event  # lets the /slow requests end


class _App:
    """/healthz answers at once; /slow reads its body and then waits for ``release``."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/slow":
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                more = message.get("more_body", False)
            while not self.release.is_set():
                await asyncio.sleep(0.02)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})


def _refusal(path: str) -> bytes:
    return json.dumps({"detail": f"busy: {path}"}).encode()


@pytest.fixture
def limits() -> TransportLimits:
    return LIMITS


@pytest.fixture
def running(limits: TransportLimits) -> Iterator[Running]:
    release = threading.Event()
    port = free_port()
    app = ConcurrencyLimit(_App(release), limit=limits.max_concurrent_requests, refusal=_refusal)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=guarded_protocol(limits),
        ws="none",
        lifespan="off",
        loop="asyncio",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        yield Running(f"http://127.0.0.1:{port}", port, release)
    finally:
        release.set()
        server.should_exit = True
        thread.join(timeout=10)


def test_half_sent_heads_are_answered_408_at_the_head_timeout(running: Running) -> None:
    with Held(running.port, 60) as held:
        time.sleep(LIMITS.header_timeout / 2)
        assert held.open_count() == 60  # held: nothing closes them before the timer
        status, seconds = healthz_seconds(running.url)
        assert status == 200
        assert seconds < 1.0
        ends = held.wait_closed(held.opened_at + LIMITS.header_timeout + SLACK)
    assert ends == {b"HTTP/1.1 408 Request Timeout": 60}


def test_a_trickled_head_does_not_extend_its_deadline(running: Running) -> None:
    with socket.create_connection(("127.0.0.1", running.port)) as sock:
        started = time.monotonic()
        sock.settimeout(0.2)
        answer = b""
        for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000:
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # closed by the server (reset by the unread bytes)
                break
            try:
                answer = sock.recv(100)
                break
            except TimeoutError:
                continue
        elapsed = time.monotonic() - started
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 ")
    assert LIMITS.header_timeout - 0.1 <= elapsed < LIMITS.header_timeout + SLACK


def _header_lines(size: int) -> bytes:
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    return line * (size // len(line))


def test_a_head_over_the_size_limit_is_431(running: Running) -> None:
    """httptools keeps every header line it is given: without a limit one connection fills
    memory within the head timeout (hundreds of MB per second on loopback)."""
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sock.sendall(_header_lines(MAX_HEAD_BYTES + 8192))
        answer = _read_all(sock)
    assert answer == (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n"
        b"content-length: 0\r\n\r\n"
    )
    # Just under the limit is an ordinary request.
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n")
        sock.sendall(_header_lines(MAX_HEAD_BYTES - 2048) + b"\r\n")
        assert _read_all(sock).startswith(b"HTTP/1.1 200 ")


def test_a_body_answered_before_it_was_read_is_no_head(running: Running) -> None:
    """An answer may come before the body was read (a 415, a 503): the rest of the body is
    still body, not a request head over the size limit, and the connection stays usable."""
    body = b"x" * (4 * MAX_HEAD_BYTES)
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(
            b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        answer = b""
        while not answer.endswith(b"\r\n\r\nok"):
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200 ")
        for start in range(0, len(body), 16384):
            sock.sendall(body[start : start + 16384])
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert _read_all(sock).startswith(b"HTTP/1.1 200 ")


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_a_silent_connection_is_closed_without_a_word(running: Running) -> None:
    with Held(running.port, 5, head=b"") as held:
        ends = held.wait_closed(held.opened_at + LIMITS.header_timeout + SLACK)
        elapsed = time.monotonic() - held.opened_at
    assert ends == {b"": 5}
    assert elapsed >= LIMITS.header_timeout - 0.1


def test_an_idle_kept_alive_connection_is_closed_at_the_idle_timeout(running: Running) -> None:
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while not answer.endswith(b"\r\n\r\nok"):
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200 ")
        served = time.monotonic()
        assert sock.recv(4096) == b""  # closed by the server, silently
        elapsed = time.monotonic() - served
    assert LIMITS.idle_timeout - 0.1 <= elapsed < LIMITS.idle_timeout + SLACK


def test_a_kept_alive_connection_serves_the_next_request(running: Running) -> None:
    with httpx.Client(base_url=running.url) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(LIMITS.idle_timeout / 4)


def test_a_trickled_body_is_cut_at_the_body_timeout(running: Running) -> None:
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(b"POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\nab")
        started = time.monotonic()
        sock.settimeout(0.2)
        ended = None
        while ended is None and time.monotonic() - started < LIMITS.body_timeout + SLACK:
            try:
                ended = sock.recv(100)
            except TimeoutError:
                try:
                    sock.sendall(b"x")  # one byte at a time: still under the limit
                except OSError:
                    ended = b""
        elapsed = time.monotonic() - started
    assert ended == b""
    assert LIMITS.body_timeout - 0.1 <= elapsed < LIMITS.body_timeout + SLACK


def _closed_by_server(sock: socket.socket) -> bool:
    # Closed with our unread head still in its buffer, the server's kernel may reset instead.
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("limits", [replace(LIMITS, max_connections=20)])
def test_at_the_cap_the_longest_waiting_connection_makes_room(running: Running) -> None:
    with Held(running.port, 50) as held:
        status, seconds = healthz_seconds(running.url)
        assert status == 200
        assert seconds < 1.0
        time.sleep(0.3)
        assert held.open_count() <= 19  # the cap, less the health check's own connection
        oldest, newest = held.sockets[0], held.sockets[-1]
        assert _closed_by_server(oldest)  # evicted, oldest first
        newest.setblocking(False)
        with pytest.raises(BlockingIOError):
            newest.recv(100)  # still held


@pytest.mark.parametrize(
    "limits", [replace(LIMITS, max_connections=3, body_timeout=30, header_timeout=30)]
)
def test_at_the_cap_with_every_connection_busy_newcomers_get_503(running: Running) -> None:
    busy = [socket.create_connection(("127.0.0.1", running.port), timeout=10) for _ in range(3)]
    try:
        for sock in busy:
            sock.sendall(b"POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert b"retry-after: 1\r\n" in answer
            assert sock.recv(4096) == b""
        running.release.set()
        for sock in busy:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in busy:
            sock.close()


@pytest.mark.parametrize("limits", [replace(LIMITS, max_concurrent_requests=2, body_timeout=30)])
def test_requests_over_the_concurrency_limit_get_503_at_once(running: Running) -> None:
    busy = [socket.create_connection(("127.0.0.1", running.port), timeout=10) for _ in range(2)]
    try:
        for sock in busy:
            sock.sendall(b"POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
        time.sleep(0.3)
        response = httpx.get(f"{running.url}/healthz", timeout=10)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json() == {"detail": "busy: /healthz"}
        running.release.set()
        for sock in busy:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        assert httpx.get(f"{running.url}/healthz", timeout=10).status_code == 200
    finally:
        for sock in busy:
            sock.close()


def test_a_path_bounded_elsewhere_is_not_counted() -> None:
    """cllm serve's attestation report has its own admission (per-client share, global queue):
    thousands of clients may wait for one quote there without locking out other routes or
    being refused by the general limit."""

    async def scenario() -> list[int]:
        gate = asyncio.Event()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["path"] != "/healthz":
                await gate.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        limited = ConcurrencyLimit(
            app, limit=1, refusal=_refusal, bounded_elsewhere=frozenset({"/report"})
        )
        statuses: dict[str, list[int]] = {}

        async def call(path: str) -> None:
            async def receive() -> Message:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    statuses.setdefault(path, []).append(message["status"])

            await limited({"type": "http", "path": path}, receive, send)

        busy = asyncio.create_task(call("/slow"))  # takes the one counted place
        await asyncio.sleep(0)
        reports = [asyncio.create_task(call("/report")) for _ in range(5)]
        await asyncio.sleep(0)
        await call("/healthz")  # counted: refused while /slow runs
        gate.set()
        await asyncio.gather(busy, *reports)
        return [*statuses["/report"], *statuses["/healthz"]]

    assert asyncio.run(scenario()) == [200, 200, 200, 200, 200, 503]
