"""dstack JSON event logs: parse, check runtime events, replay.

dstack (Phala's TDX app platform) publishes the TD's event log as JSON: a list of
``{"imr", "event_type", "digest", "event", "event_payload"}`` objects, where ``imr`` 0..3 is the
RTMR index itself (not the CC MR index of the CCEL log), ``digest`` is the 48-byte SHA-384 value
extended (hex) and ``event_payload`` is hex. Some dstack documents embed the list as a JSON
string rather than an array; both are accepted.

Boot events (copied from the firmware's CCEL log) can only be replayed, their digests are not
derivable from the JSON. Runtime events (``imr`` 3, ``event_type`` 0x08000001), which dstack's
guest agent emits for the app id, compose hash, instance id, key provider and so on, have

    digest = SHA-384(event_type as u32 LE || ":" || event || ":" || payload bytes)

so their content can be checked. Decisions:

* Replay enforces that check by default (``check_runtime=True``): a verifier reads these events'
  payloads (the compose hash, say) as facts about the TD while the quote only vouches for the
  digests, so a payload that does not hash to its logged digest is an unauthenticated claim and
  the log is rejected (``eventlog_runtime_digest_mismatch``). Every runtime event in the corpus
  passes.
* dstack's "lite" logs (``TdxEvent::stripped``) drop a runtime event's digest (``""``, or the key
  left out, which dstack's serde default allows) because it is derivable. By default replay is
  literal and extends only the digests written in the log, so such events count for nothing
  (the reading of the tdx-vectors corpus, whose ``replays_to`` cllm's CLI must reproduce);
  ``recompute_stripped=True`` extends the computed digest instead, as dstack's own
  ``TdxEvent::digest()`` does, and then a complete lite log replays to the quote. Only runtime
  events may omit their digest: any other event without 48 digest bytes is malformed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cllm.errors import EventLogError
from cllm.measure._registers import Rtmrs, replay_digests
from cllm.measure._rtmr import RTMR_COUNT, RTMR_SIZE

__all__ = [
    "DSTACK_RUNTIME_EVENT_TYPE",
    "DstackEvent",
    "check_runtime_event",
    "parse_dstack_event_log",
    "replay_dstack",
    "runtime_event_digest",
]

DSTACK_RUNTIME_EVENT_TYPE: Final = 0x08000001
DSTACK_RUNTIME_IMR: Final = 3
# dstack logs hold a few dozen events; the cap bounds the memory a hostile list can make us hold.
MAX_EVENTS: Final = 65_536
_REQUIRED: Final = ("imr", "event_type", "event", "event_payload")  # "digest" may be omitted
_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})*")


def runtime_event_digest(event_type: int, event: str, payload: bytes) -> bytes:
    """SHA-384(event_type u32 LE || ":" || event || ":" || payload): what dstack extends."""
    return hashlib.sha384(
        event_type.to_bytes(4, "little") + b":" + event.encode("utf-8") + b":" + payload
    ).digest()


@dataclass(frozen=True, slots=True)
class DstackEvent:
    """One entry. ``digest`` is empty only for a runtime event whose log omitted it."""

    imr: int  # RTMR index 0..3
    event_type: int
    digest: bytes
    event: str
    event_payload: bytes
    index: int  # position in the list, for messages

    @property
    def is_runtime(self) -> bool:
        return self.imr == DSTACK_RUNTIME_IMR and self.event_type == DSTACK_RUNTIME_EVENT_TYPE

    @property
    def computed_digest(self) -> bytes | None:
        """The digest recomputed from the content (runtime events only, else None)."""
        if not self.is_runtime:
            return None
        return runtime_event_digest(self.event_type, self.event, self.event_payload)

    @property
    def extended_digest(self) -> bytes:
        """The value replay extends: the logged digest, or the computed one when omitted."""
        if self.digest:
            return self.digest
        computed = self.computed_digest
        if computed is None:  # parse_dstack_event_log never builds this; be safe anyway
            raise EventLogError(f"event {self.index} has no digest", code="eventlog_bad_field")
        return computed


def _describe(value: object) -> str:
    """A short description of a bad value; never repr() an arbitrary object (a huge int's
    repr raises, a big string's is long)."""
    if isinstance(value, str):
        return repr(value[:40]) + ("..." if len(value) > 40 else "")
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int) and abs(value) < 10**20:
        return str(value)
    return f"a value of type {type(value).__name__}"


def _bad(index: int, reason: str) -> EventLogError:
    return EventLogError(f"event {index}: {reason}", code="eventlog_bad_field")


def _int_field(entry: dict[str, Any], key: str, index: int, upper: int) -> int:
    value = entry[key]
    # bool is an int subclass in Python but not a number in JSON
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= upper:
        raise _bad(index, f"{key} must be an integer 0..{upper}, got {_describe(value)}")
    return value


def _hex_field(entry: dict[str, Any], key: str, index: int) -> bytes:
    value = entry[key]
    # bytes.fromhex alone would accept spaces; a digest with a gap is not what dstack writes
    if not isinstance(value, str) or _HEX.fullmatch(value) is None:
        raise _bad(index, f"{key} must be a hex string, got {_describe(value)}")
    return bytes.fromhex(value)


def _parse_entry(entry: object, index: int) -> DstackEvent:
    if not isinstance(entry, dict):
        raise _bad(index, f"expected an object, got {type(entry).__name__}")
    missing = [key for key in _REQUIRED if key not in entry]
    if missing:
        raise _bad(index, f"missing field(s) {', '.join(missing)}")
    imr = _int_field(entry, "imr", index, RTMR_COUNT - 1)
    event_type = _int_field(entry, "event_type", index, 0xFFFFFFFF)
    digest = _hex_field(entry, "digest", index) if "digest" in entry else b""
    payload = _hex_field(entry, "event_payload", index)
    event = entry["event"]
    if not isinstance(event, str):
        raise _bad(index, f"event must be a string, got {type(event).__name__}")
    try:
        event.encode("utf-8")  # JSON can carry lone surrogates, which have no UTF-8 form
    except UnicodeEncodeError as exc:
        raise _bad(index, "event is not valid Unicode text") from exc
    parsed = DstackEvent(imr, event_type, digest, event, payload, index)
    if len(digest) != RTMR_SIZE and not (not digest and parsed.is_runtime):
        raise _bad(
            index,
            f"digest must be {RTMR_SIZE} bytes (empty only for a runtime event), got {len(digest)}",
        )
    return parsed


def _decode(log: str | bytes | bytearray) -> object:
    try:
        return json.loads(log)
    # ValueError covers JSONDecodeError, bad UTF-8 in bytes and over-long integers;
    # RecursionError deeply nested arrays.
    except (ValueError, RecursionError) as exc:
        position = getattr(exc, "pos", None)
        where = f" (at offset {position})" if position is not None else ""
        raise EventLogError(
            f"event log is not valid JSON: {type(exc).__name__}{where}", code="eventlog_bad_json"
        ) from exc


def parse_dstack_event_log(
    log: str | bytes | bytearray | Sequence[object],
) -> tuple[DstackEvent, ...]:
    """Parse a dstack event log: the list itself, or JSON text of the list (the form dstack
    uses when it embeds the log as a string field). Unknown keys in an entry are ignored."""
    entries: object = _decode(log) if isinstance(log, str | bytes | bytearray) else log
    if not isinstance(entries, Sequence) or isinstance(entries, str | bytes | bytearray):
        raise EventLogError(
            f"event log must be a JSON array, got {type(entries).__name__}",
            code="eventlog_bad_json",
        )
    if len(entries) > MAX_EVENTS:
        raise EventLogError(
            f"{len(entries)} events, more than {MAX_EVENTS}", code="eventlog_too_many_events"
        )
    return tuple(_parse_entry(entry, index) for index, entry in enumerate(entries))


def check_runtime_event(event: DstackEvent) -> None:
    """Raise ``EventLogError`` (``eventlog_runtime_digest_mismatch``) when a runtime event's
    logged digest is not the hash of its content. Other events, and runtime events without a
    logged digest, pass: there is nothing to compare."""
    computed = event.computed_digest
    if computed is not None and event.digest and event.digest != computed:
        raise EventLogError(
            f"event {event.index} ({event.event!r:.60}): digest {event.digest.hex()} is not "
            f"SHA-384 of its content ({computed.hex()})",
            code="eventlog_runtime_digest_mismatch",
        )


def replay_dstack(
    events: Iterable[DstackEvent], *, check_runtime: bool = True, recompute_stripped: bool = False
) -> Rtmrs:
    """Replay RTMR0..RTMR3. With ``check_runtime`` (the default) every runtime event's digest
    must match its content (see the module docstring); turn it off only to inspect a log.
    ``recompute_stripped`` extends the computed digest of runtime events whose digest the log
    leaves out; by default they are not extended."""

    def measurements() -> Iterable[tuple[int, bytes]]:
        for event in events:
            if check_runtime:
                check_runtime_event(event)
            if event.digest or recompute_stripped or not event.is_runtime:
                yield event.imr, event.extended_digest  # raises for a non-runtime event

    return replay_digests(measurements())
