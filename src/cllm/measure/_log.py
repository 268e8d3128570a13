"""The append-only event log: every entry is written before its value is extended.

Ordering rule (docs/design.md §4): under ONE lock, ``append`` first records the entry (in
memory and in the JSON Lines sink, flushed), then calls ``extend``. A peer project wrote and
extended without a common lock; concurrent measurements then reached the register in a
different order than the log listed them, and its quotes could no longer be verified. With one
lock around both steps, the log order is the extend order.

Failure policy (the log and the register must never silently diverge):

* If writing the entry fails, nothing is extended.
* If ``extend`` raises, the entry stays in the log (it cannot be taken back from the sink, and
  the register may or may not have changed) and the log becomes *failed*: ``append`` raises
  ``EventLogError(code="extend_failed")`` now and ``EventLogError(code="eventlog_failed")`` on
  every later call, and ``failed`` is True. Either way the caller must stop: a server must not
  serve evidence from a failed log (a verifier would reject it anyway, since the replay would
  not match the quote's RTMR).
* A failed write also marks the log failed (the sink may hold a partial line).

The sink holds one event per line: each line is exactly the event's canonical (RFC 8785)
bytes, so ``SHA-384(line)`` is the value that was extended. Flushing (not fsync) is enough:
RTMRs reset at reboot, and a flushed line survives a crash of the process, which is the case
where a restarted server resumes the log (``resume=True``).
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Final

from cllm.errors import EventLogError
from cllm.measure._event import MAX_LOG_TEXT, Event, parse_event_log
from cllm.measure._rtmr import RTMR_COUNT, ZERO_RTMR, extend

__all__ = ["EventLog", "ExtendFn", "Sink"]

_log = logging.getLogger(__name__)

ExtendFn = Callable[[int, bytes], None]
"""``extend(rtmr_index, value)``: RTMR[rtmr_index] := SHA-384(RTMR[rtmr_index] || value)."""

Sink = str | os.PathLike[str] | IO[bytes] | IO[str]

_NEWLINE: Final = b"\n"


def _read_up_to(handle: IO[bytes], limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total < limit and (chunk := handle.read(min(1 << 20, limit - total))):
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


class EventLog:
    """An append-only, thread-safe event log bound to one ``extend`` function.

    ``sink`` is an optional JSON Lines destination: a path (opened for appending, created
    0600) or an open file object (binary or text; not closed by ``close``). A path that already
    holds entries is refused unless ``resume=True``, which loads them as the log's prefix, for
    a server restarted within one boot whose register already contains them (RTMRs survive a
    process restart, only a reboot resets them). Where the backend can read the register, the
    caller should compare it with ``rtmrs()`` after resuming.
    """

    def __init__(self, extend: ExtendFn, *, sink: Sink | None = None, resume: bool = False) -> None:
        self._extend = extend
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._registers = [ZERO_RTMR] * RTMR_COUNT
        self._failed = False
        self._closed = False
        self._owned: IO[bytes] | None = None
        self._sink: IO[bytes] | IO[str] | None = None
        if sink is None:
            pass
        elif isinstance(sink, str | os.PathLike):
            self._sink = self._owned = self._open(Path(sink), resume=resume)
        else:
            self._sink = sink

    def _open(self, path: Path, *, resume: bool) -> IO[bytes]:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise EventLogError(
                f"cannot open event log {path}: {exc.strerror}", code="eventlog_io"
            ) from exc
        handle = os.fdopen(fd, "rb+", buffering=0)
        try:
            existing = _read_up_to(handle, MAX_LOG_TEXT + 1)
            if existing and not resume:
                raise EventLogError(
                    f"event log {path} already has entries; pass resume=True to continue it",
                    code="eventlog_exists",
                )
            if existing:
                if not existing.endswith(_NEWLINE):
                    raise EventLogError(
                        f"event log {path} ends with a partial line", code="eventlog_malformed"
                    )
                for event in parse_event_log(existing):
                    self._record(event)
                _log.info("resumed %d events from %s", len(self._events), path)
        except BaseException:
            handle.close()
            raise
        return handle

    def _record(self, event: Event) -> None:
        self._events.append(event)
        self._registers[event.rtmr] = extend(self._registers[event.rtmr], event.extend_value())

    def _write(self, line: bytes) -> None:
        sink = self._sink
        if sink is None:
            return
        if isinstance(sink, io.TextIOBase):
            sink.write(line.decode("utf-8"))  # canonical JSON is UTF-8 with no raw newline
        else:
            sink.write(line)  # type: ignore[arg-type]  # binary sink: IO[bytes]
        sink.flush()

    @property
    def failed(self) -> bool:
        """True once a write or an extend failed; the log then refuses further appends."""
        return self._failed

    def append(self, event: Event) -> None:
        """Write ``event`` to the log, then extend its value into RTMR[event.rtmr]."""
        line = event.canonical_bytes() + _NEWLINE
        value = event.extend_value()
        with self._lock:
            if self._failed:
                raise EventLogError(
                    "the event log failed earlier and accepts no more entries",
                    code="eventlog_failed",
                )
            if self._closed:
                raise EventLogError("the event log is closed", code="eventlog_closed")
            try:
                self._write(line)
            except Exception as exc:
                self._failed = True
                raise EventLogError(
                    f"cannot write the event log: {exc}", code="eventlog_io"
                ) from exc
            self._record(event)
            try:
                self._extend(event.rtmr, value)
            except Exception as exc:
                # The entry is in the log but maybe not in the register: stop here, loudly.
                self._failed = True
                _log.error("extend of RTMR%d failed after logging %r", event.rtmr, event.name)
                raise EventLogError(
                    f"extending RTMR{event.rtmr} failed; the log is closed for appends: {exc}",
                    code="extend_failed",
                ) from exc

    def events(self) -> tuple[Event, ...]:
        """A snapshot of every entry, in log (= extend) order."""
        with self._lock:
            return tuple(self._events)

    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        """RTMR0..3 replayed from the entries, each starting at zero. After a failure, this is
        what the log says, not necessarily what the register holds."""
        with self._lock:
            registers = self._registers
            return (registers[0], registers[1], registers[2], registers[3])

    def close(self) -> None:
        """Stop accepting entries (``append`` then raises ``eventlog_closed``) and close a sink
        this log opened itself (a path); file objects passed in stay open."""
        with self._lock:
            self._closed = True
            if self._owned is not None:
                self._owned.close()
                self._owned = None
                self._sink = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
