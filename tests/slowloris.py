"""The slowloris attacker for the transport tests of both services: many connections to a
loopback port, each holding a request head it never finishes. Bounded: at most ``MAX_HELD``
sockets, every one closed when the ``Held`` context ends."""

from __future__ import annotations

import select
import socket
import time
from types import TracebackType

import httpx

MAX_HELD = 1000
# An unfinished head: no blank line, so the server waits for more.
HALF_HEAD = b"POST /v1/attestation HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"


class Held:
    """``count`` connections to ``127.0.0.1:port``, each sent ``head`` and nothing more."""

    def __init__(self, port: int, count: int, *, head: bytes = HALF_HEAD) -> None:
        assert 0 < count <= MAX_HELD
        self.port = port
        self.count = count
        self.head = head
        self.sockets: list[socket.socket] = []
        self.opened_at = 0.0

    def __enter__(self) -> Held:
        try:
            for _ in range(self.count):
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                sock.sendall(self.head)
                self.sockets.append(sock)
        except BaseException:
            self.close()
            raise
        self.opened_at = time.monotonic()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()

    def open_count(self) -> int:
        """How many of the connections the server has not closed (nothing readable yet)."""
        return len(self.sockets) - len(_readable(self.sockets, 0))

    def wait_closed(self, deadline: float) -> dict[bytes, int]:
        """Wait (until the monotonic ``deadline``) for the server to close every connection;
        returns how many ended with which status line (``b""``: closed without a word).
        Connections still open at the deadline count under ``b"open"``."""
        ends: dict[bytes, int] = {}
        pending = list(self.sockets)
        while pending and time.monotonic() < deadline:
            for sock in _readable(pending, 0.05):
                pending.remove(sock)
                ended = _read_to_close(sock).split(b"\r\n", 1)[0]
                ends[ended] = ends.get(ended, 0) + 1
        if pending:
            ends[b"open"] = len(pending)
        return ends


def _readable(sockets: list[socket.socket], timeout: float) -> list[socket.socket]:
    # poll, not select: select() cannot watch descriptors numbered 1024 and above.
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in sockets}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll(timeout * 1000)]


def _read_to_close(sock: socket.socket) -> bytes:
    sock.settimeout(2)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def healthz_seconds(url: str) -> tuple[int, float]:
    """``GET url/healthz`` on a fresh connection: its status and how long it took."""
    started = time.monotonic()
    response = httpx.get(f"{url}/healthz", timeout=10)
    return response.status_code, time.monotonic() - started
