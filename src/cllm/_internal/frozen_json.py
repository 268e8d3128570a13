"""JSON values of the event model, validated and frozen: strings, integers within
+-(2**53 - 1) (the range JCS encodes exactly), booleans, lists and objects; no floats, no
``null``. Events, evidence details and GPU claims hold such values; errors are
``EventLogError`` with the event codes (see ``cllm.measure._event``)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, NoReturn, TypeAlias

from cllm.errors import EventLogError

__all__ = ["MAX_DEPTH", "FrozenJson", "JsonValue", "check_unicode", "freeze_json", "thaw_json"]

JsonValue: TypeAlias = "str | int | bool | list[JsonValue] | dict[str, JsonValue]"
"""A value an event may hold, in its plain (mutable) JSON form."""

FrozenJson: TypeAlias = "str | int | bool | tuple[FrozenJson, ...] | Mapping[str, FrozenJson]"
"""The same value kept immutable: lists as tuples, objects as read-only mappings."""

MAX_DEPTH: Final = 32  # the event object itself is depth 1
_INT_LIMIT: Final = 2**53 - 1  # JCS writes numbers as IEEE-754 doubles: exact up to here


def _fail(message: str, code: str) -> NoReturn:
    raise EventLogError(message, code=code)


def check_unicode(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _fail(f"{where}: string is not valid Unicode (lone surrogate)", "event_bad_string")


def freeze_json(value: object, *, where: str = "details", depth: int = 1) -> FrozenJson:
    """Validate a JSON value of the allowed types and return an immutable copy.

    ``depth`` is the nesting level of ``value`` itself; the limit is ``MAX_DEPTH``. Raises
    ``EventLogError`` (never ``TypeError``) for anything outside the allowed types.
    """
    if depth > MAX_DEPTH:
        _fail(f"{where}: nesting deeper than {MAX_DEPTH}", "event_too_deep")
    # bool before int: bool is an int subclass, and both are allowed as themselves.
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -_INT_LIMIT <= value <= _INT_LIMIT:
            _fail(f"{where}: integer outside +-(2**53 - 1)", "event_int_range")
        return int(value)  # drop int subclasses (IntEnum) so equality and JCS agree
    if isinstance(value, str):
        check_unicode(value, where)
        return str(value)
    if isinstance(value, float):
        _fail(f"{where}: floats are not allowed in events", "event_float")
    if isinstance(value, list | tuple):
        return tuple(
            freeze_json(item, where=f"{where}[{index}]", depth=depth + 1)
            for index, item in enumerate(value)
        )
    if isinstance(value, Mapping):
        frozen: dict[str, FrozenJson] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                _fail(f"{where}: object keys must be strings", "event_bad_value")
            check_unicode(key, f"{where} key")
            frozen[str(key)] = freeze_json(item, where=f"{where}.{key}", depth=depth + 1)
        return MappingProxyType(frozen)
    _fail(f"{where}: {type(value).__name__} is not an allowed event value", "event_bad_value")


def thaw_json(value: FrozenJson) -> JsonValue:
    """The plain JSON form (dicts and lists) of a frozen value."""
    if isinstance(value, tuple):
        return [thaw_json(item) for item in value]
    if isinstance(value, Mapping):
        return {key: thaw_json(item) for key, item in value.items()}
    return value
