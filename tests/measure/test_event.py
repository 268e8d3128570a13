"""Events: RFC 8785 canonical form, lossless round trips, strict rejection, replay."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cllm.errors import EventLogError
from cllm.measure import Event, parse_event_log, replay
from cllm.measure._event import MAX_EVENTS, MAX_LOG_TEXT

DIGEST = bytes(range(48))
HEX = DIGEST.hex()


def event_json(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "rtmr": 3,
        "type": "cllm.file",
        "name": "model",
        "digest": {"sha384": HEX},
        "details": {"path": "/models/m.gguf", "size": 5},
    }
    obj.update(changes)
    return obj


def make(details: dict[str, Any] | None = None, **fields: Any) -> Event:
    base: dict[str, Any] = {"rtmr": 3, "type": "cllm.file", "name": "model", "digest": DIGEST}
    base.update(fields)
    return Event(details=details or {}, **base)


def details_json(event: Event) -> bytes:
    """The canonical bytes of ``details`` as they appear inside the event's encoding."""
    canonical = event.canonical_bytes()
    start = canonical.index(b'"details":') + len(b'"details":')
    end = canonical.index(b',"digest":')
    return canonical[start:end]


# --- RFC 8785 canonical form -------------------------------------------------------------------


def test_whole_event_canonical_form_by_hand() -> None:
    event = Event.from_json(event_json())
    expected = (
        '{"details":{"path":"/models/m.gguf","size":5},'
        f'"digest":{{"sha384":"{HEX}"}},"name":"model","rtmr":3,"type":"cllm.file"}}'
    ).encode()
    assert event.canonical_bytes() == expected
    assert event.extend_value() == hashlib.sha384(expected).digest()


def test_rfc8785_key_order_is_by_utf16_code_units() -> None:
    # RFC 8785 section 3.2.3. U+1F600 (surrogates D83D DE00) sorts *before* U+FB33 in UTF-16,
    # although its code point is larger: a naive code-point sort gets this wrong.
    details = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    ).encode()
    assert details_json(make(details)) == expected


def test_rfc8785_string_escaping() -> None:
    # RFC 8785 section 3.2.2.2: "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/" serialises as
    # "€$\u000f\nA'B\"\\\\\"/": only the JSON-mandatory escapes, lower-case hex, '/' literal.
    value = "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/"
    expected = b'{"s":"' + '€$\\u000f\\nA\'B\\"\\\\\\\\\\"/'.encode() + b'"}'
    assert details_json(make({"s": value})) == expected
    # DEL and U+2028 are not escaped; other C0 controls are, with short forms where JSON has them.
    assert (
        details_json(make({"s": "\x7f\u2028\b\t\x1f"}))
        == '{"s":"\x7f\u2028\\b\\t\\u001f"}'.encode()
    )


def test_rfc8785_numbers_literals_and_no_whitespace() -> None:
    details = {
        "ints": [0, -1, 1, 100, 2**53 - 1, -(2**53 - 1)],
        "bools": [True, False],
        "nested": {"b": [], "a": {}},
    }
    expected = (
        b'{"bools":[true,false],"ints":[0,-1,1,100,9007199254740991,-9007199254740991],'
        b'"nested":{"a":{},"b":[]}}'
    )
    assert details_json(make(details)) == expected


# Keys limited to the BMP (no surrogates): there UTF-16 order equals code point order, so
# Python's json with sorted keys must produce the same bytes as JCS for our value types.
_keys = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"]), max_size=8)
_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(_keys, _values, max_size=5))
def test_canonical_form_matches_sorted_compact_json(details: dict[str, Any]) -> None:
    event = make(details)
    expected = json.dumps(
        event.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert event.canonical_bytes() == expected
    # Lossless: the log entry decodes to the same event, and encodes to the same bytes.
    (again,) = parse_event_log(event.canonical_bytes())
    assert again == event
    assert again.to_json() == event.to_json()


# --- Model ------------------------------------------------------------------------------------


def test_round_trip() -> None:
    obj = event_json(details={"a": [1, {"b": True}], "c": "x"})
    event = Event.from_json(obj)
    assert event.to_json() == obj
    assert Event.from_json(event.to_json()) == event
    assert event.digest == DIGEST
    assert hash(event) == hash(Event.from_json(obj))


def test_event_is_immutable() -> None:
    source: dict[str, Any] = {"list": [1, 2], "obj": {"k": "v"}}
    event = make(source)
    source["list"].append(3)
    source["obj"]["k"] = "changed"
    assert event.to_json()["details"] == {"list": [1, 2], "obj": {"k": "v"}}
    assert event.details["list"] == (1, 2)
    with pytest.raises(TypeError):
        event.details["new"] = 1  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.name = "other"  # type: ignore[misc]


def test_repr_shows_hex_digest() -> None:
    assert HEX in repr(make())


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ([], "event_bad_value"),
        (event_json(extra=1), "event_unknown_key"),
        ({k: v for k, v in event_json().items() if k != "details"}, "event_missing_key"),
        (event_json(digest={"sha384": HEX, "sha256": "00"}), "event_unknown_key"),
        (event_json(digest={}), "event_missing_key"),
        (event_json(digest={"sha256": HEX}), "event_unknown_key"),
        (event_json(digest=HEX), "event_bad_value"),
        (event_json(digest={"sha384": 5}), "event_bad_value"),
        (event_json(digest={"sha384": HEX.upper()}), "event_bad_digest"),
        (event_json(digest={"sha384": HEX[:-2]}), "event_bad_digest"),
        (event_json(digest={"sha384": "zz" + HEX[2:]}), "event_bad_digest"),
        (event_json(rtmr="3"), "event_bad_value"),
        (event_json(rtmr=True), "event_bad_value"),
        (event_json(rtmr=3.0), "event_float"),
        (event_json(rtmr=4), "event_bad_rtmr"),
        (event_json(rtmr=-1), "event_bad_rtmr"),
        (event_json(type="tdx.file"), "event_bad_type"),
        (event_json(type="cllm."), "event_bad_type"),
        (event_json(type="cllm.File"), "event_bad_type"),
        (event_json(type=["cllm.file"]), "event_bad_value"),
        (event_json(name=""), "event_bad_name"),
        (event_json(name="n" * 257), "event_bad_name"),
        (event_json(name=7), "event_bad_value"),
        (event_json(name="\ud800"), "event_bad_string"),
        (event_json(details=[1]), "event_bad_value"),
        (event_json(details={"x": 1.5}), "event_float"),
        (event_json(details={"x": [1, 2.0]}), "event_float"),
        (event_json(details={"x": None}), "event_bad_value"),
        (event_json(details={"x": b"raw"}), "event_bad_value"),
        (event_json(details={"x": {1, 2}}), "event_bad_value"),
        (event_json(details={1: "x"}), "event_bad_value"),
        (event_json(details={"x": 2**53}), "event_int_range"),
        (event_json(details={"x": -(2**53)}), "event_int_range"),
        (event_json(details={"x": "\udc80"}), "event_bad_string"),
        (event_json(details={"\ud800": 1}), "event_bad_string"),
        (event_json(details={"x": "y" * 70_000}), "event_too_large"),
    ],
)
def test_from_json_rejects(obj: object, code: str) -> None:
    with pytest.raises(EventLogError) as caught:
        Event.from_json(obj)
    assert caught.value.code == code


def test_nesting_limit() -> None:
    def nested(depth: int) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = [value]
        return value

    # The event is depth 1 and details depth 2; 30 more levels are allowed, 31 are not.
    Event.from_json(event_json(details={"x": nested(29)}))
    with pytest.raises(EventLogError) as caught:
        Event.from_json(event_json(details={"x": nested(30)}))
    assert caught.value.code == "event_too_deep"


def test_constructor_validates_like_from_json() -> None:
    with pytest.raises(EventLogError) as caught:
        make(digest=b"short")
    assert caught.value.code == "event_bad_digest"
    with pytest.raises(EventLogError) as caught:
        make(details={"f": float("nan")})
    assert caught.value.code == "event_float"


# --- Parsing logs ------------------------------------------------------------------------------


def test_parse_forms_agree() -> None:
    events = [event_json(name=f"e{i}") for i in range(3)]
    array = json.dumps(events)
    lines = "\n".join(Event.from_json(e).canonical_bytes().decode() for e in events) + "\n"
    parsed = parse_event_log(array)
    assert parsed == parse_event_log(array.encode())
    assert parsed == parse_event_log(lines)
    assert parsed == parse_event_log(events)
    assert [e.to_json() for e in parsed] == events
    assert parse_event_log("[]") == ()
    assert parse_event_log("") == ()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("[", "eventlog_malformed"),
        ('{"rtmr": 3}', "event_missing_key"),  # JSON Lines with one bad event
        ("[1]", "event_bad_value"),
        ("5", "event_bad_value"),  # a JSON Lines line that is not an object
        (b"\xff\xfe[]", "eventlog_malformed"),
        ('[{"rtmr": 3, "rtmr": 3}]', "eventlog_malformed"),
        ('[{"rtmr": NaN}]', "event_float"),
        ('[{"rtmr": 3.0}]', "event_float"),
        ('[{"rtmr": 3e0}]', "event_float"),
        ('[{"rtmr": 1' + "0" * 5000 + "}]", "eventlog_malformed"),
        ("[" * 100_000 + "]" * 100_000, "event_too_deep"),
        ("[" + " " * MAX_LOG_TEXT + "]", "eventlog_too_large"),
        ("[" + ",".join(["{}"] * (MAX_EVENTS + 1)) + "]", "eventlog_too_large"),
    ],
)
def test_parse_rejects(text: str | bytes, code: str) -> None:
    with pytest.raises(EventLogError) as caught:
        parse_event_log(text)
    assert caught.value.code == code


def test_parse_error_names_the_event() -> None:
    bad = [event_json(), event_json(rtmr=9)]
    with pytest.raises(EventLogError, match="event 1") as caught:
        parse_event_log(bad)
    assert caught.value.code == "event_bad_rtmr"
    with pytest.raises(EventLogError, match="line 2"):
        parse_event_log(json.dumps(event_json()) + "\n{\n")


def test_parse_rejects_non_list_objects() -> None:
    with pytest.raises(EventLogError) as caught:
        parse_event_log({"events": []})  # type: ignore[arg-type]
    assert caught.value.code == "eventlog_malformed"


# --- Replay ------------------------------------------------------------------------------------


def test_replay_matches_hand_computed_chain() -> None:
    e1 = Event.from_json(event_json(name="one"))
    e2 = Event.from_json(event_json(name="two"))
    e0 = Event.from_json(event_json(name="zero", rtmr=0))
    zero = bytes(48)
    v1 = hashlib.sha384(e1.canonical_bytes()).digest()
    v2 = hashlib.sha384(e2.canonical_bytes()).digest()
    v0 = hashlib.sha384(e0.canonical_bytes()).digest()
    rtmr3 = hashlib.sha384(hashlib.sha384(zero + v1).digest() + v2).digest()
    rtmr0 = hashlib.sha384(zero + v0).digest()
    assert replay([e1, e0, e2]) == (rtmr0, zero, zero, rtmr3)
    assert replay([]) == (zero, zero, zero, zero)
    # Order matters within a register.
    assert replay([e2, e1])[3] != rtmr3
