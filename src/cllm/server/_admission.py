"""Fair admission to quoting, and batches: one quote answers many clients' nonces.

A TD makes one quote at a time, and on real hardware each takes 4 ms to about a second
(``cllm.tee._quote_cost``). So nonces wait in per-client queues; a batch closes when the quote
slot is free and the oldest waiting nonce has waited ``batch_wait`` (or the batch is full), and
is filled round-robin across clients, so a client with many nonces waiting gets no more of a
batch than one with a single nonce. Each client (peer address, an IPv6 /64, or the trusted proxy
header's address when one is configured) may have ``client_pending`` nonces waiting or being
quoted; a request beyond that waits briefly (``share_wait``) for the client's share to free up,
and is then refused, only *that* client's (429, ``rate_limited``, with ``Retry-After``).
A cap on all waiting nonces (``queue_max``) bounds memory against clients from very many
addresses; past it the server is busy for everyone (503, ``attestation_busy``, ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from cllm.errors import CllmError, ServerError

__all__ = ["Admission", "AdmissionRefusedError", "AdmissionSettings", "client_key"]

_log = logging.getLogger(__name__)

# The quote function: the batch's nonces in, one response body per nonce out (same order).
QuoteBatch = Callable[[Sequence[bytes]], Sequence[bytes]]
_EWMA: Final = 0.2


@dataclass(frozen=True, slots=True)
class AdmissionSettings:
    batch_max: int = 1024  # 1: every nonce gets its own quote (unbatched)
    batch_wait: float = 0.002  # seconds the oldest nonce waits for company once the slot is free
    client_pending: int = 4  # nonces one client may have waiting or being quoted
    queue_max: int = 16384  # nonces waiting, all clients together
    # A request over its client's share waits this long for the share to free up before 429
    # (a short queue: a client a little ahead of itself is not refused at once, and a flooder
    # is slowed to its share's pace instead of costing the server a refusal per round trip).
    share_wait: float = 0.25
    share_waiters: int = 64  # such waiting requests per client; beyond, 429 at once


class AdmissionRefusedError(CllmError):
    """Not now: ``status`` 429 (this client is over its share) or 503 (the server is busy or
    the TEE failed); ``retry_after`` in whole seconds."""

    def __init__(self, message: str, *, code: str, status: int, retry_after: int) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.retry_after = retry_after


@dataclass(slots=True)
class _Waiting:
    nonce: bytes
    client: str
    arrived: float
    future: asyncio.Future[bytes]


@dataclass(slots=True)
class _State:
    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    queues: OrderedDict[str, deque[_Waiting]] = field(default_factory=OrderedDict)
    pending: dict[str, int] = field(default_factory=dict)  # waiting + being quoted, per client
    waiting: int = 0
    task: asyncio.Task[None] | None = None
    over_share: dict[str, int] = field(default_factory=dict)  # requests waiting for a share
    freed: dict[str, asyncio.Event] = field(default_factory=dict)  # set when a share frees


@functools.lru_cache(maxsize=4096)
def client_key(peer: str | None, header_value: str | None) -> str:
    """Whom a request counts against: the address the trusted proxy header names (its last
    entry: the one the proxy itself appended) when it is configured and present, else the
    peer. IPv6 addresses count per /64, which one host typically holds whole."""
    text = peer or "unknown"
    if header_value:
        last = header_value.rsplit(",", 1)[-1].strip()
        if last:
            text = last
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text[:64]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class Admission:
    """Per-client queues in front of one quoting slot; see the module docstring."""

    def __init__(
        self,
        quote_batch: QuoteBatch,
        settings: AdmissionSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._quote_batch = quote_batch
        self._settings = settings
        self._clock = clock
        self._state: _State | None = None
        self._quote_seconds = 0.05  # running estimate of one quote's time, for Retry-After
        self.batches = 0  # made so far (for tests and logs)
        self.largest_batch = 0

    def _current(self) -> _State:
        loop = asyncio.get_running_loop()
        state = self._state
        if state is None or state.loop is not loop:
            state = self._state = _State(loop=loop)
        if state.task is None or state.task.done():
            state.task = loop.create_task(self._run(state), name="cllm-attestation-batches")
        return state

    def _retry_after(self, batches: int) -> int:
        return max(1, math.ceil(self._quote_seconds * (batches + 1)))

    async def evidence(self, nonce: bytes, *, client: str) -> bytes:
        """The response body for ``nonce``, once its batch is quoted. Raises
        ``AdmissionRefusedError`` for a client over its share or a full queue."""
        state = self._current()
        settings = self._settings
        held = state.pending.get(client, 0)
        if held >= settings.client_pending:
            held = await self._wait_for_share(state, client)
        if held >= settings.client_pending:
            raise AdmissionRefusedError(
                f"this client already has {held} attestation requests pending",
                code="rate_limited",
                status=429,
                retry_after=self._retry_after(1),
            )
        if state.waiting >= settings.queue_max:
            raise AdmissionRefusedError(
                "too many attestation requests are waiting",
                code="attestation_busy",
                status=503,
                retry_after=self._retry_after(math.ceil(state.waiting / settings.batch_max)),
            )
        waiting = _Waiting(nonce, client, self._clock(), state.loop.create_future())
        queue = state.queues.get(client)
        if queue is None:
            queue = state.queues[client] = deque()
        queue.append(waiting)
        state.pending[client] = held + 1
        state.waiting += 1
        state.wake.set()
        try:
            return await waiting.future
        finally:
            if not waiting.future.done():  # the client went away before its batch
                waiting.future.cancel()

    async def _wait_for_share(self, state: _State, client: str) -> int:
        """Wait (``share_wait`` at most) until ``client`` is under its share; its count then."""
        settings = self._settings
        waiters = state.over_share.get(client, 0)
        if settings.share_wait <= 0 or waiters >= settings.share_waiters:
            return state.pending.get(client, 0)
        state.over_share[client] = waiters + 1
        deadline = self._clock() + settings.share_wait
        try:
            while state.pending.get(client, 0) >= settings.client_pending:
                left = deadline - self._clock()
                if left <= 0:
                    break
                freed = state.freed.get(client)
                if freed is None:
                    freed = state.freed[client] = asyncio.Event()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(freed.wait(), left)
        finally:
            left_waiting = state.over_share[client] - 1
            if left_waiting:
                state.over_share[client] = left_waiting
            else:
                del state.over_share[client]
        return state.pending.get(client, 0)

    def _release(self, state: _State, client: str) -> None:
        left = state.pending[client] - 1
        if left:
            state.pending[client] = left
        else:
            del state.pending[client]
        freed = state.freed.pop(client, None)
        if freed is not None:
            freed.set()

    def _take_batch(self, state: _State) -> list[_Waiting]:
        """Up to ``batch_max`` nonces, one per client in turn (the order rotates across
        batches), skipping those whose clients went away."""
        batch: list[_Waiting] = []
        queues = state.queues
        while queues and len(batch) < self._settings.batch_max:
            client, queue = queues.popitem(last=False)
            item = queue.popleft()
            state.waiting -= 1
            if queue:
                queues[client] = queue  # to the back of the line
            if item.future.done():
                self._release(state, client)
                continue
            batch.append(item)
        return batch

    def _oldest(self, state: _State) -> float:
        return min(queue[0].arrived for queue in state.queues.values())

    async def _run(self, state: _State) -> None:
        settings = self._settings
        while True:
            if not state.queues:
                state.wake.clear()
                await state.wake.wait()
                continue
            if state.waiting < settings.batch_max:
                delay = self._oldest(state) + settings.batch_wait - self._clock()
                if delay > 0:
                    state.wake.clear()
                    with contextlib.suppress(TimeoutError):  # a full batch may form sooner
                        await asyncio.wait_for(state.wake.wait(), delay)
                    continue
            batch = self._take_batch(state)
            if batch:
                await self._quote(state, batch)

    async def _quote(self, state: _State, batch: list[_Waiting]) -> None:
        started = self._clock()
        try:
            bodies = await asyncio.to_thread(self._quote_batch, [w.nonce for w in batch])
            if len(bodies) != len(batch):
                raise ServerError("the quote batch answered another count", code="internal_error")
        except CllmError as exc:
            _log.warning("quoting a batch of %d failed: [%s] %s", len(batch), exc.code, exc)
            for item in batch:
                self._release(state, item.client)
                if not item.future.done():
                    item.future.set_exception(
                        AdmissionRefusedError(exc.message, code=exc.code, status=503, retry_after=1)
                    )
            return
        except Exception:  # never let the batch loop die: fail this batch closed
            _log.exception("quoting a batch of %d failed unexpectedly", len(batch))
            for item in batch:
                self._release(state, item.client)
                if not item.future.done():
                    item.future.set_exception(
                        AdmissionRefusedError(
                            "the TEE could not quote",
                            code="internal_error",
                            status=503,
                            retry_after=1,
                        )
                    )
            return
        elapsed = self._clock() - started
        self._quote_seconds += _EWMA * (elapsed - self._quote_seconds)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        for item, body in zip(batch, bodies, strict=True):
            self._release(state, item.client)
            if not item.future.done():
                item.future.set_result(body)
