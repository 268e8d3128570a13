"""Connection limits for both services (``cllm serve``, ``cllm verifier serve``) under uvicorn.

uvicorn bounds only the keep-alive wait after a response; a connection that sends nothing, or
a request head one byte at a time, is held forever, and its ``limit_concurrency`` counts such
half-open connections too, so a slowloris client both exhausts descriptors and turns every
real request into a 503. Here, at the protocol level (below the ASGI app, where the bytes
arrive):

* a request head must be complete within ``header_timeout`` of the connection opening or of the
  request's first byte (answered 408 when some of it came, else closed silently); the body
  within ``body_timeout`` of the head; an idle keep-alive connection lives ``idle_timeout``;
  a head over ``MAX_HEAD_BYTES`` is answered 431 (httptools itself has no limit);
* open connections are capped (``max_connections``, by default derived from RLIMIT_NOFILE):
  at the cap, the connection that has waited longest *without* a request in progress (a
  half-sent head or an idle keep-alive) is closed to make room, so a flood of half-open
  connections cannot lock out real clients; when every connection is serving a request, the
  newcomer gets 503 and is closed;
* at most ``max_concurrent_requests`` requests run at once (ASGI level, counting requests, not
  connections); more are answered 503 with ``Retry-After`` at once.

See docs/server.md, "Connections and timeouts".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cllm.errors import CllmError

__all__ = [
    "MAX_HEAD_BYTES",
    "RESERVED_DESCRIPTORS",
    "ConcurrencyLimit",
    "LimitSettings",
    "TransportLimits",
    "connection_cap",
    "effective_limits",
    "guarded_protocol",
    "raise_nofile_limit",
    "run_guarded",
]

_log = logging.getLogger(__name__)

# Descriptors kept back from the connection cap for everything else a service opens: its
# listening sockets, log and state files, the model, the event loop's own, thread pools.
RESERVED_DESCRIPTORS = 128
# Raising the soft RLIMIT_NOFILE to the hard one, but not beyond this (each connection costs
# memory too; a service that needs more says so with max_connections).
_NOFILE_CEILING = 65536
_MIN_CONNECTIONS = 16

# A request head (request line and headers) larger than this is refused: httptools sets no
# limit, so one connection could otherwise fill memory with header lines within the head timeout.
MAX_HEAD_BYTES = 64 * 1024
_TOO_LARGE_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n"
    b"content-length: 0\r\n\r\n"
)
_TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_FULL_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\n"
    b"content-length: 0\r\n\r\n"
)


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """The effective limits of one running service (seconds, counts)."""

    header_timeout: float
    body_timeout: float
    idle_timeout: float
    max_connections: int
    max_concurrent_requests: int


class LimitSettings(Protocol):
    """The transport fields each service's settings model carries (same names, same meaning)."""

    @property
    def header_timeout(self) -> float: ...
    @property
    def body_timeout(self) -> float: ...
    @property
    def idle_timeout(self) -> float: ...
    @property
    def max_connections(self) -> int | None: ...
    @property
    def max_concurrent_requests(self) -> int: ...


def effective_limits(settings: LimitSettings, *, nofile: int) -> TransportLimits:
    return TransportLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        idle_timeout=settings.idle_timeout,
        max_connections=connection_cap(
            configured=settings.max_connections,
            nofile=nofile,
            max_concurrent_requests=settings.max_concurrent_requests,
        ),
        max_concurrent_requests=settings.max_concurrent_requests,
    )


def raise_nofile_limit(
    *,
    getrlimit: Callable[[int], tuple[int, int]] = resource.getrlimit,
    setrlimit: Callable[[int, tuple[int, int]], None] = resource.setrlimit,
) -> int:
    """Raise the soft RLIMIT_NOFILE towards the hard limit (what Go's runtime does for every
    program: the low soft default only protects select(), which nothing here uses); returns
    the soft limit now in force."""
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    ceiling = _NOFILE_CEILING if hard == resource.RLIM_INFINITY else min(hard, _NOFILE_CEILING)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        try:
            setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
        except (OSError, ValueError) as exc:
            _log.warning("cannot raise RLIMIT_NOFILE from %d to %d: %s", soft, ceiling, exc)
    return _NOFILE_CEILING if soft == resource.RLIM_INFINITY else soft


def connection_cap(*, configured: int | None, nofile: int, max_concurrent_requests: int) -> int:
    """The connection cap: ``configured``, or what the descriptor limit ``nofile`` leaves after
    the reserve and one descriptor per running request (an upstream socket, a file).
    A configured cap the descriptors cannot carry is refused (``config_invalid``)."""
    available = nofile - RESERVED_DESCRIPTORS - max_concurrent_requests
    if available < _MIN_CONNECTIONS:
        raise CllmError(
            f"RLIMIT_NOFILE {nofile} leaves {available} descriptors for connections (at least "
            f"{_MIN_CONNECTIONS} needed, {RESERVED_DESCRIPTORS} reserved plus one per "
            "concurrent request): raise `ulimit -n` or lower max_concurrent_requests",
            code="config_invalid",
        )
    if configured is None:
        return available
    if configured > available:
        raise CllmError(
            f"max_connections {configured} exceeds the {available} that RLIMIT_NOFILE {nofile} "
            "allows: raise `ulimit -n` or lower max_connections",
            code="config_invalid",
        )
    return configured


class _Guarded(HttpToolsProtocol):
    """uvicorn's httptools protocol with the timers, the head size limit and the cap described
    above. The parser's own events say where a connection is (``_reading``: a request head, a
    body, or between requests); one timer at a time runs for it:

    ========================  ===========================  ==================================
    reading                   no answer in progress        an answer in progress
    ========================  ===========================  ==================================
    a head                    ``header_timeout`` (408)     none (a pipelined head waits)
    a body                    ``body_timeout``             ``body_timeout``
    between requests          ``idle_timeout``             none (answers have no limit)
    ========================  ===========================  ==================================

    A timer runs from the moment its row was entered: trickled bytes never extend it. One
    subclass per running server (made by :func:`guarded_protocol`) holds its bookkeeping.
    """

    limits: ClassVar[TransportLimits]
    # Accepted and not yet closed by us or the peer (uvicorn's own set lags a closed transport
    # by a loop iteration, and counts nothing we refused).
    open_connections: ClassVar[set[_Guarded]]
    # Connections with no request in progress, oldest first: the ones evicted at the cap.
    waiting: ClassVar[dict[_Guarded, None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = ""
        self._reading = "head"  # head | body | none (between requests)
        self._began = False  # some of the current request head has arrived
        self._heads = 0  # request heads completed on this connection
        self._head_size = 0  # bytes of the request head being received
        self._refused = False

    # --- the connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        cls = type(self)
        if len(cls.open_connections) >= cls.limits.max_connections and not self._evict():
            self._refused = True
            transport.write(_FULL_503)
            transport.close()
            return
        super().connection_made(transport)
        cls.open_connections.add(self)
        self._update()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._forget()
        super().connection_lost(exc)

    def _forget(self) -> None:
        self._disarm()
        type(self).open_connections.discard(self)
        type(self).waiting.pop(self, None)

    def _close(self) -> None:
        self._forget()
        if not self.transport.is_closing():
            self.transport.close()

    def _evict(self) -> bool:
        """Close the connection that has waited longest without a request in progress."""
        waiting = type(self).waiting
        if not waiting:
            return False
        oldest = next(iter(waiting))
        _log.debug("connection cap reached: closing a connection with no request in progress")
        oldest._close()
        return True

    # --- where the connection is ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        heads, in_body = self._heads, self._reading == "body"
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._heads == heads and not in_body and self._reading != "body":
            self._head_size += len(data)  # all of it went to a head (or between requests)
            if self._head_size > MAX_HEAD_BYTES:
                self.transport.write(_TOO_LARGE_431)
                self._close()
                return
        self._update()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading, self._began = "head", True

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._reading, self._began = "body", False
        self._heads += 1
        self._head_size = 0

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading = "none"

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            # uvicorn armed its keep-alive timer (whole seconds, its own setting): ours rule.
            self._unset_keepalive_if_required()
            self._update()

    def _answering(self) -> bool:
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _update(self) -> None:
        """Run the timer of the row the connection is in (see the class docstring); keep the
        connection among the evictable ones while no request is in progress."""
        answering = self._answering()
        if self._reading == "body":
            kind = "body"
        elif answering:
            kind = ""
        else:
            kind = "head" if self._reading == "head" else "idle"
        if answering or self._reading == "body":
            type(self).waiting.pop(self, None)
        elif self not in type(self).waiting:
            type(self).waiting[self] = None
        if kind == self._timer_kind:
            return
        self._disarm()
        limits = type(self).limits
        if kind == "head":
            self._arm(kind, limits.header_timeout, self._head_expired)
        elif kind == "body":
            self._arm(kind, limits.body_timeout, self._close)
        elif kind == "idle":
            self._arm(kind, limits.idle_timeout, self._close)

    # --- timers -----------------------------------------------------------------------------

    def _arm(self, kind: str, seconds: float, then: Callable[[], None]) -> None:
        self._timer = self.loop.call_later(seconds, then)
        self._timer_kind = kind

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_kind = ""

    def _head_expired(self) -> None:
        # Only armed while no answer is in progress: a 408 cannot land inside another answer.
        self._timer = None
        if self.transport.is_closing():
            return
        if self._began:
            self.transport.write(_TIMEOUT_408)
        self._close()


def guarded_protocol(limits: TransportLimits) -> type[asyncio.Protocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` enforcing ``limits``; its
    bookkeeping belongs to the one server that uses it."""
    return type(
        "GuardedHttpProtocol",
        (_Guarded,),
        {"limits": limits, "open_connections": set(), "waiting": {}},
    )


class ConcurrencyLimit:
    """Pure ASGI: at most ``limit`` HTTP requests in progress; the next ones are answered 503
    with ``Retry-After: 1`` and the body ``refusal(path)`` (JSON in the API's own shape) at once,
    instead of queueing without bound. Paths in ``bounded_elsewhere`` are not counted: their
    route has its own, tighter admission (cllm serve's attestation report: a per-client share
    and a global queue, where thousands of clients wait cheaply for one quote)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        refusal: Callable[[str], bytes],
        bounded_elsewhere: frozenset[str] = frozenset(),
    ) -> None:
        self._app = app
        self._limit = limit
        self._refusal = refusal
        self._exempt = bounded_elsewhere
        self._running = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._exempt:
            await self._app(scope, receive, send)
            return
        if self._running >= self._limit:
            body = self._refusal(scope["path"])
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", b"1"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        self._running += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self._running -= 1


def run_guarded(
    app: ASGIApp,
    *,
    limits: TransportLimits,
    refusal: Callable[[str], bytes],
    workers: int = 1,
    bounded_elsewhere: frozenset[str] = frozenset(),
    **options: Any,
) -> None:
    """``uvicorn.run(app, **options)`` with ``limits`` in force (per process). WebSocket
    upgrades are off (no route uses them; an upgraded connection would escape the timers).
    With ``workers`` > 1 the socket is bound here and that many processes are forked to serve
    it, each sharing what ``app`` already holds (keys, policies, loaded collateral)."""
    import uvicorn

    _log.info(
        "connections: at most %d open, %d requests in progress; timeouts: head %gs, body %gs, "
        "idle %gs",
        limits.max_connections,
        limits.max_concurrent_requests,
        limits.header_timeout,
        limits.body_timeout,
        limits.idle_timeout,
    )
    guarded = ConcurrencyLimit(
        app,
        limit=limits.max_concurrent_requests,
        refusal=refusal,
        bounded_elsewhere=bounded_elsewhere,
    )
    if workers == 1:
        uvicorn.run(guarded, http=guarded_protocol(limits), ws="none", **options)
        return
    config = uvicorn.Config(guarded, http=guarded_protocol(limits), ws="none", **options)
    _prefork(lambda sockets: uvicorn.Server(config).run(sockets=sockets), config, workers)


def _prefork(serve: Callable[[list[Any]], None], config: Any, workers: int) -> None:
    """Bind once, fork ``workers`` processes that serve the one socket, and supervise them:
    a worker that dies is replaced; SIGINT or SIGTERM stops them all. Forked (not spawned), so
    each worker starts with the state the parent loaded, and no app needs an import string."""
    sock = config.bind_socket()
    children: set[int] = set()
    stopping = False

    def start() -> None:
        pid = os.fork()
        if pid == 0:  # the worker: uvicorn installs its own signal handlers
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            status = 0
            try:
                serve([sock])
            except BaseException:
                _log.exception("worker %d failed", os.getpid())
                status = 1
            finally:
                os._exit(status)
        children.add(pid)

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for _ in range(workers):
            start()
        _log.info("%d worker processes serve %s", workers, sock.getsockname())
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            children.discard(pid)
            if not stopping:
                _log.warning("worker %d ended (status %d); starting another", pid, status)
                start()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
