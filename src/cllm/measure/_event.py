"""cllm measurement events: the model, its canonical encoding, strict parsing and replay.

An event is exactly this JSON object (docs/design.md §4)::

    {"rtmr": 3, "type": "cllm.<kind>", "name": "...",
     "digest": {"sha384": "<96 lowercase hex>"}, "details": {...}}

The value extended into the RTMR is ``SHA-384(JCS(event))`` (RFC 8785). A log entry is exactly
the object that was hashed, nothing added, so anyone can replay a log from its entries alone.
For that to hold, parsing must be lossless: ``Event.from_json(obj).to_json() == obj`` for every
accepted ``obj``. That is why the parser rejects everything it could only accept by normalising
(upper-case hex, floats such as ``1.0``, duplicate keys) instead of silently fixing it.

Values are strings, integers (within +-(2**53 - 1), the range JCS encodes exactly), booleans,
lists and objects. ``null`` and floats are rejected: floats have no unambiguous canonical form
across implementations, and ``null`` is not part of the contract.

Error codes (``EventLogError.code``), stable:

* ``eventlog_malformed``: not JSON, not UTF-8, duplicate keys, not a list of objects.
* ``eventlog_too_large``: text longer than ``MAX_LOG_TEXT`` or more than ``MAX_EVENTS`` events.
* ``event_unknown_key`` / ``event_missing_key``: the event (or its digest) has other keys.
* ``event_bad_value``: a field has the wrong JSON type (for example ``"rtmr": "3"``), or a
  value inside ``details`` is not one of the allowed types (``null``, sets, bytes...).
* ``event_float``: a float anywhere (``1.0``, ``1e3``, ``NaN``).
* ``event_int_range``: an integer outside +-(2**53 - 1).
* ``event_bad_string``: a string (or key) that is not valid Unicode (lone surrogates).
* ``event_bad_rtmr``: RTMR index outside 0..3.
* ``event_bad_type``: ``type`` is not ``cllm.<kind>`` with kind ``[a-z0-9][a-z0-9._-]*``.
* ``event_bad_name``: empty name, or longer than ``MAX_NAME``.
* ``event_bad_digest``: not 96 lower-case hex characters.
* ``event_too_deep``: nesting deeper than ``MAX_DEPTH``.
* ``event_too_large``: canonical encoding longer than ``MAX_EVENT_BYTES``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, NoReturn

from cllm._internal.frozen_json import (
    MAX_DEPTH,
    FrozenJson,
    JsonValue,
    check_unicode,
    freeze_json,
    thaw_json,
)
from cllm._internal.jcs import canonical_json
from cllm.errors import EventLogError
from cllm.measure._rtmr import RTMR_COUNT, RTMR_SIZE, ZERO_RTMR, extend

__all__ = [
    "EVENT_TYPE_PREFIX",
    "MAX_DEPTH",
    "MAX_EVENTS",
    "MAX_EVENT_BYTES",
    "MAX_LOG_TEXT",
    "MAX_NAME",
    "Event",
    "FrozenJson",
    "JsonValue",
    "freeze_json",
    "parse_event_log",
    "replay",
    "thaw_json",
]

_log = logging.getLogger(__name__)

EVENT_TYPE_PREFIX: Final = "cllm."
MAX_EVENT_BYTES: Final = 64 * 1024  # canonical encoding of one event
MAX_EVENTS: Final = 10_000  # the evidence document allows as many
MAX_LOG_TEXT: Final = 16 * 1024 * 1024
MAX_NAME: Final = 256

_KEYS: Final = frozenset({"rtmr", "type", "name", "digest", "details"})
_KIND = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_HEX384 = re.compile(r"[0-9a-f]{96}")


def _fail(message: str, code: str) -> NoReturn:
    raise EventLogError(message, code=code)


@dataclass(frozen=True, slots=True)
class Event:
    """One measurement event. Construct it directly or with ``from_json``; both validate.

    ``digest`` is the component's raw SHA-384 (48 bytes); ``details`` is kept as an immutable
    mapping (nested lists become tuples). ``canonical_bytes()`` is what is hashed and what a
    JSON Lines log stores, one event per line.
    """

    rtmr: int
    type: str
    name: str
    digest: bytes
    details: Mapping[str, FrozenJson] = field(default_factory=lambda: MappingProxyType({}))
    _canonical: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.rtmr, bool) or not isinstance(self.rtmr, int):
            _fail("rtmr must be an integer", "event_bad_value")
        if not 0 <= self.rtmr < RTMR_COUNT:
            _fail(f"rtmr index {self.rtmr} outside 0..{RTMR_COUNT - 1}", "event_bad_rtmr")
        if not isinstance(self.type, str):
            _fail("type must be a string", "event_bad_value")
        kind = self.type.removeprefix(EVENT_TYPE_PREFIX)
        if kind == self.type or _KIND.fullmatch(kind) is None:
            _fail(f"type {self.type[:80]!r} is not cllm.<kind>", "event_bad_type")
        if not isinstance(self.name, str):
            _fail("name must be a string", "event_bad_value")
        check_unicode(self.name, "name")
        if not 0 < len(self.name) <= MAX_NAME:
            _fail(f"name must be 1..{MAX_NAME} characters", "event_bad_name")
        if not isinstance(self.digest, bytes) or len(self.digest) != RTMR_SIZE:
            _fail("digest must be 48 bytes (SHA-384)", "event_bad_digest")
        if not isinstance(self.details, Mapping):
            _fail("details must be an object", "event_bad_value")
        details = freeze_json(self.details, depth=2)
        assert isinstance(details, Mapping)  # freeze_json maps Mapping -> Mapping
        object.__setattr__(self, "details", details)
        # freeze_json has ruled out what canonical_json cannot take (floats, big ints, ...).
        canonical = canonical_json(_plain(self.rtmr, self.type, self.name, self.digest, details))
        if len(canonical) > MAX_EVENT_BYTES:
            _fail(f"event is larger than {MAX_EVENT_BYTES} bytes", "event_too_large")
        object.__setattr__(self, "_canonical", canonical)

    def __repr__(self) -> str:
        details = dict(self.details)
        return (
            f"Event(rtmr={self.rtmr}, type={self.type!r}, name={self.name!r}, "
            f"sha384={self.digest.hex()}, details={details!r})"
        )

    def __hash__(self) -> int:
        # details is a mapping proxy (unhashable); the canonical bytes identify the event.
        return hash(self._canonical)

    def to_json(self) -> dict[str, JsonValue]:
        """The event as a plain JSON object: exactly the log entry that is hashed."""
        return _plain(self.rtmr, self.type, self.name, self.digest, self.details)

    @classmethod
    def from_json(cls, obj: object) -> Event:
        """Decode one log entry strictly; every problem is an ``EventLogError`` with a code."""
        if not isinstance(obj, Mapping):
            _fail("an event must be a JSON object", "event_bad_value")
        keys = set(obj)
        if unknown := keys - _KEYS:
            _fail(f"unknown event keys {sorted(map(str, unknown))[:5]}", "event_unknown_key")
        if missing := _KEYS - keys:
            _fail(f"missing event keys {sorted(missing)}", "event_missing_key")
        digest = obj["digest"]
        if not isinstance(digest, Mapping):
            _fail("digest must be an object", "event_bad_value")
        if set(digest) != {"sha384"}:
            code = "event_missing_key" if not digest else "event_unknown_key"
            _fail('digest must be exactly {"sha384": hex}', code)
        hex_digest = digest["sha384"]
        if not isinstance(hex_digest, str):
            _fail("digest.sha384 must be a string", "event_bad_value")
        # Lower-case only: upper-case would replay differently from what to_json writes back.
        if _HEX384.fullmatch(hex_digest) is None:
            _fail("digest.sha384 must be 96 lower-case hex characters", "event_bad_digest")
        # Floats can arrive here from already-decoded JSON (evidence documents); the value
        # checks in __post_init__ name them, and cover rtmr/name as well.
        for key in ("rtmr", "name", "type"):
            if isinstance(obj[key], float):
                _fail(f"{key}: floats are not allowed in events", "event_float")
        return cls(
            rtmr=obj["rtmr"],
            type=obj["type"],
            name=obj["name"],
            digest=bytes.fromhex(hex_digest),
            details=obj["details"],
        )

    def canonical_bytes(self) -> bytes:
        """RFC 8785 (JCS) encoding of ``to_json()``: UTF-8, sorted keys, no whitespace."""
        return self._canonical

    def extend_value(self) -> bytes:
        """SHA-384 of the canonical bytes: the 48-byte value extended into RTMR[rtmr]."""
        return hashlib.sha384(self._canonical).digest()


def _plain(
    rtmr: int, type_: str, name: str, digest: bytes, details: Mapping[str, FrozenJson]
) -> dict[str, JsonValue]:
    return {
        "rtmr": rtmr,
        "type": type_,
        "name": name,
        "digest": {"sha384": digest.hex()},
        "details": {key: thaw_json(value) for key, value in details.items()},
    }


def replay(events: Iterable[Event]) -> tuple[bytes, bytes, bytes, bytes]:
    """RTMR0..3 after extending every event's value in order, each register starting at zero."""
    registers = [ZERO_RTMR] * RTMR_COUNT
    for event in events:
        registers[event.rtmr] = extend(registers[event.rtmr], event.extend_value())
    return (registers[0], registers[1], registers[2], registers[3])


# --- Parsing -----------------------------------------------------------------------------------


def _reject_float(text: str) -> NoReturn:
    _fail(f"floats are not allowed in events ({text[:40]})", "event_float")


def _reject_constant(text: str) -> NoReturn:
    _fail(f"{text} is not allowed in events", "event_float")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of duplicate keys; two readers of one log could then disagree
    # about its content, so duplicates are an error.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        _fail("duplicate key in a JSON object", "eventlog_malformed")
    return obj


def _loads(text: str) -> object:
    try:
        return json.loads(
            text,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError as exc:
        raise EventLogError(f"nesting deeper than {MAX_DEPTH}", code="event_too_deep") from exc
    except ValueError as exc:  # JSONDecodeError, and ints longer than Python's digit limit
        raise EventLogError(f"not JSON: {exc}", code="eventlog_malformed") from exc


def _decode_text(data: str | bytes) -> str:
    if len(data) > MAX_LOG_TEXT:
        _fail(f"event log larger than {MAX_LOG_TEXT} bytes", "eventlog_too_large")
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventLogError("event log is not UTF-8", code="eventlog_malformed") from exc


def _json_lines(text: str) -> Iterator[object]:
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                yield _loads(line)
            except EventLogError as exc:
                raise EventLogError(f"line {number}: {exc.message}", code=exc.code) from exc


def parse_event_log(log: str | bytes | Sequence[object]) -> tuple[Event, ...]:
    """Decode a cllm event log: a JSON array of events (text), JSON Lines (one event per line,
    as ``EventLog`` writes it), or an already-decoded list of objects (an evidence document's
    ``event_log``). Strict: every problem is an ``EventLogError`` with a stable code."""
    items: object
    if isinstance(log, str | bytes):
        text = _decode_text(log)
        items = _loads(text) if text.lstrip().startswith("[") else list(_json_lines(text))
    else:
        items = log
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        _fail("an event log must be a list of events", "eventlog_malformed")
    if len(items) > MAX_EVENTS:
        _fail(f"more than {MAX_EVENTS} events", "eventlog_too_large")
    events: list[Event] = []
    for index, item in enumerate(items):
        try:
            events.append(Event.from_json(item))
        except EventLogError as exc:
            raise EventLogError(f"event {index}: {exc.message}", code=exc.code) from exc
    _log.debug("parsed %d events", len(events))
    return tuple(events)
