"""dstack JSON event logs on logs built here (no corpus needed): input forms, replay against an
independent extend, the runtime-event digest rule, omitted digests, every field error, and a
hypothesis fuzz."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cllm.errors import EventLogError
from cllm.measure import Rtmrs, _dstack, parse_dstack_event_log, replay_dstack
from cllm.measure._dstack import (
    DSTACK_RUNTIME_EVENT_TYPE,
    DstackEvent,
    check_runtime_event,
    runtime_event_digest,
)
from fuzzing import budget

RUNTIME = DSTACK_RUNTIME_EVENT_TYPE


def _sha384(data: bytes) -> bytes:
    return hashlib.sha384(data).digest()


def _runtime_digest(event: str, payload: bytes) -> bytes:
    """Independent of cllm: SHA-384(u32 LE type || ":" || event || ":" || payload)."""
    return _sha384(struct.pack("<I", RUNTIME) + b":" + event.encode() + b":" + payload)


def boot(imr: int, seed: bytes, event_type: int = 0x80000001) -> dict[str, Any]:
    return {
        "imr": imr,
        "event_type": event_type,
        "digest": _sha384(seed).hex(),
        "event": "",
        "event_payload": seed.hex(),
    }


def runtime(event: str, payload: bytes, *, digest: str | None = None) -> dict[str, Any]:
    return {
        "imr": 3,
        "event_type": RUNTIME,
        "digest": _runtime_digest(event, payload).hex() if digest is None else digest,
        "event": event,
        "event_payload": payload.hex(),
    }


def _log() -> list[dict[str, Any]]:
    return [
        boot(0, b"td-hob"),
        boot(0, b"acpi", 10),
        boot(1, b"kernel"),
        boot(2, b"initrd", 6),
        boot(0, b"separator", 4),
        runtime("system-preparing", b""),
        runtime("app-id", bytes.fromhex("3763bc34552cf3a27ff71ad5f7a90471562a1a2d")),
        runtime("compose-hash", b"\x01" * 32),
    ]


def _expected(entries: list[dict[str, Any]]) -> tuple[bytes, ...]:
    registers = [bytes(48)] * 4
    for entry in entries:
        registers[entry["imr"]] = _sha384(registers[entry["imr"]] + bytes.fromhex(entry["digest"]))
    return tuple(registers)


def _error(log: Any, code: str = "eventlog_bad_field") -> EventLogError:
    with pytest.raises(EventLogError) as info:
        replay_dstack(parse_dstack_event_log(log))
    assert info.value.code == code, str(info.value)
    return info.value


# --- parsing and replay -------------------------------------------------------------------------


def test_parse_and_replay() -> None:
    entries = _log()
    events = parse_dstack_event_log(entries)
    assert len(events) == len(entries)
    first = events[0]
    assert (first.imr, first.event_type, first.index) == (0, 0x80000001, 0)
    assert first.digest == _sha384(b"td-hob")
    assert first.event_payload == b"td-hob"
    assert not first.is_runtime
    assert events[6].is_runtime
    assert events[6].event == "app-id"
    assert replay_dstack(events).as_tuple() == _expected(entries)


@pytest.mark.parametrize("form", ["list", "str", "bytes", "bytearray", "tuple"])
def test_input_forms(form: str) -> None:
    entries = _log()
    text = json.dumps(entries)
    log: Any = {
        "list": entries,
        "str": text,  # what dstack's documents carry when "event_log" is a JSON string
        "bytes": text.encode(),
        "bytearray": bytearray(text.encode()),
        "tuple": tuple(entries),
    }[form]
    assert replay_dstack(parse_dstack_event_log(log)).as_tuple() == _expected(entries)


def test_empty_log_replays_to_zero() -> None:
    assert replay_dstack(parse_dstack_event_log("[]")) == Rtmrs()


def test_unknown_keys_are_ignored() -> None:
    entries = _log()
    entries[0]["comment"] = "not part of the measurement"
    assert replay_dstack(parse_dstack_event_log(entries)).as_tuple() == _expected(_log())


def test_upper_case_hex_is_accepted() -> None:
    entries = _log()
    entries[0]["digest"] = entries[0]["digest"].upper()
    assert replay_dstack(parse_dstack_event_log(entries)).as_tuple() == _expected(_log())


# --- runtime events -----------------------------------------------------------------------------


def test_runtime_event_digest_rule() -> None:
    payload = bytes.fromhex("7a6673")
    assert runtime_event_digest(RUNTIME, "storage-fs", payload) == _runtime_digest(
        "storage-fs", payload
    )
    # the type is little-endian and non-ASCII names hash as UTF-8
    assert runtime_event_digest(1, "é", b"") == _sha384(b"\x01\x00\x00\x00:\xc3\xa9:")


def test_runtime_digest_mismatch_is_rejected_by_default() -> None:
    entries = _log()
    entries[6]["event_payload"] = "00" * 20  # claims another app id than the one extended
    events = parse_dstack_event_log(entries)
    with pytest.raises(EventLogError) as info:
        replay_dstack(events)
    assert info.value.code == "eventlog_runtime_digest_mismatch"
    assert "event 6" in str(info.value)
    with pytest.raises(EventLogError):
        check_runtime_event(events[6])
    # Inspection mode replays the logged digests.
    assert replay_dstack(events, check_runtime=False).as_tuple() == _expected(entries)


def test_check_runtime_event_ignores_boot_events() -> None:
    events = parse_dstack_event_log(_log())
    for event in events:
        check_runtime_event(event)
    assert events[0].computed_digest is None
    assert events[5].computed_digest == events[5].digest


def test_runtime_type_outside_rtmr3_is_not_a_runtime_event() -> None:
    entry = boot(2, b"x", RUNTIME)  # digest is not the runtime rule's: not checked
    (event,) = parse_dstack_event_log([entry])
    assert not event.is_runtime
    assert replay_dstack([event]).rtmr2 == _expected([entry])[2]


@pytest.mark.parametrize("omit", ["empty", "absent"])
def test_omitted_runtime_digest_is_computed(omit: str) -> None:
    """dstack "lite" logs drop derivable digests: literal replay leaves those events out,
    ``recompute_stripped`` extends the computed value."""
    full = _log()
    lite = _log()
    for entry in lite:
        if entry["event_type"] == RUNTIME:
            if omit == "empty":
                entry["digest"] = ""
            else:
                del entry["digest"]
    events = parse_dstack_event_log(lite)
    assert events[7].digest == b""
    assert events[7].extended_digest == bytes.fromhex(full[7]["digest"])
    recomputed = replay_dstack(events, recompute_stripped=True)
    assert recomputed.as_tuple() == _expected(full)
    unchecked = replay_dstack(events, check_runtime=False, recompute_stripped=True)
    assert unchecked.as_tuple() == _expected(full)
    literal = replay_dstack(events).as_tuple()
    assert literal[3] != _expected(full)[3]
    assert literal[:3] == _expected(full)[:3]


def test_omitted_boot_digest_is_an_error() -> None:
    entries = _log()
    entries[1]["digest"] = ""
    error = _error(entries)
    assert "event 1" in str(error)
    del entries[1]["digest"]
    _error(entries)
    # A hand-built event without a digest cannot be replayed either.
    with pytest.raises(EventLogError):
        replay_dstack([DstackEvent(0, 1, b"", "", b"", 0)])


# --- malformed input ----------------------------------------------------------------------------


def _with(index: int, **fields: Any) -> list[dict[str, Any]]:
    entries = _log()
    entries[index].update(fields)
    return entries


@pytest.mark.parametrize(
    "entries",
    [
        _with(0, imr=4),
        _with(0, imr=-1),
        _with(0, imr="0"),
        _with(0, imr=True),
        _with(0, imr=1.0),
        _with(0, imr=None),
        _with(0, event_type=-1),
        _with(0, event_type=1 << 32),
        _with(0, event_type=10**30),
        _with(0, event_type="1"),
        _with(0, digest="ab" * 47),
        _with(0, digest="ab" * 49),
        _with(0, digest="a" * 95),
        _with(0, digest="zz" * 48),
        _with(0, digest="ab " * 48),
        _with(0, digest="0x" + "ab" * 47),
        _with(0, digest=list(range(48))),
        _with(0, digest=None),
        _with(0, event_payload="abc"),
        _with(0, event_payload="\u0660\u0661"),  # Unicode digits: int() would take them
        _with(0, event_payload=b"\x00"),
        _with(0, event=None),
        _with(0, event=7),
        _with(5, event="\ud800"),  # a lone surrogate has no UTF-8 form
        [*_log(), "not an object"],
        [*_log(), ["imr", 0]],
        [{key: value for key, value in _log()[0].items() if key != "imr"}],
        [{key: value for key, value in _log()[0].items() if key != "event"}],
        [{key: value for key, value in _log()[0].items() if key != "event_payload"}],
        [{}],
    ],
)
def test_bad_fields(entries: list[Any]) -> None:
    error = _error(entries)
    assert "event " in str(error)


@pytest.mark.parametrize(
    "log",
    [
        "",
        "{",
        "[1,",
        '{"event_log": []}',
        '"[]"',  # a JSON string is decoded once, not recursively
        "null",
        "42",
        b"\xff\xfe[",
        "[" * 100_000 + "]" * 100_000,
        "[" + "9" * 5000 + "]",
        {"event_log": []},
        42,
        None,
    ],
    ids=lambda value: type(value).__name__,
)
def test_bad_documents(log: Any) -> None:
    with pytest.raises(EventLogError) as info:
        parse_dstack_event_log(log)
    assert info.value.code in {"eventlog_bad_json", "eventlog_bad_field"}, str(info.value)


def test_json_error_reports_offset() -> None:
    with pytest.raises(EventLogError) as info:
        parse_dstack_event_log('[{"imr": 0,, }]')
    assert info.value.code == "eventlog_bad_json"
    assert "at offset 11" in str(info.value)


def test_event_count_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_dstack, "MAX_EVENTS", 3)
    assert len(parse_dstack_event_log(_log()[:3])) == 3
    _error(_log()[:4], "eventlog_too_many_events")


def test_messages_do_not_echo_huge_values() -> None:
    error = _error(_with(0, digest="x" * 100_000))
    assert len(str(error)) < 200


# --- fuzz ---------------------------------------------------------------------------------------


def _parse_all(log: Any) -> None:
    try:
        events = parse_dstack_event_log(log)
        replay_dstack(events)
    except EventLogError as exc:
        assert exc.code.startswith("eventlog_")


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2**33),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["", "ab" * 48, "AB" * 48, "0" * 95, "zz", _log()[0]["digest"]]),
)
_JSONISH = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=8,
)
# Flat junk for the entry mutator: recursive strategies cost hypothesis milliseconds per draw.
_JUNK = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["imr", "digest", "event", "x"]), _SCALARS, max_size=3),
)
_FIELD_VALUES = {
    "imr": st.one_of(st.integers(-1, 4), _SCALARS),
    "event_type": st.one_of(st.sampled_from([RUNTIME, 1, 4, 0xFFFFFFFF, 1 << 32]), _SCALARS),
    "digest": _SCALARS,
    "event": st.one_of(st.text(max_size=12), _SCALARS),
    "event_payload": st.one_of(st.binary(max_size=8).map(bytes.hex), _SCALARS),
}


@st.composite
def mutated_entries(draw: st.DrawFn) -> list[Any]:
    """Valid logs with a few fields replaced, deleted or whole entries swapped for junk."""
    entries: list[Any] = _log()
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(entries) - 1))
        kind = draw(st.sampled_from(["field", "delete", "junk"]))
        entry = entries[index]
        key = draw(st.sampled_from(sorted(_FIELD_VALUES)))
        if kind == "junk" or not isinstance(entry, dict):
            entries[index] = draw(_JUNK)
        elif kind == "field":
            entry[key] = draw(_FIELD_VALUES[key])
        else:
            entry.pop(key, None)
    return entries


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    text = list(json.dumps(_log()[draw(st.integers(0, 7)) :]))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(text) - 1, 0)))
        choice = draw(st.sampled_from(["replace", "cut", "insert"]))
        if choice == "replace" and text:
            text[at] = draw(st.sampled_from([*'[]{}",:0aZ\\ ', "\ud800"]))
        elif choice == "cut":
            del text[at:]
        else:
            text.insert(at, draw(st.text(max_size=3)))
    return "".join(text)


@budget(3_000)
@given(mutated_entries())
def test_fuzz_mutated_entries(entries: list[Any]) -> None:
    _parse_all(entries)


@budget(2_500)
@given(st.one_of(mutated_text(), st.text(max_size=200), st.binary(max_size=200)))
def test_fuzz_text(log: str | bytes) -> None:
    _parse_all(log)


@budget(500)
@given(_JSONISH)
def test_fuzz_json_values(value: Any) -> None:
    _parse_all(value)
