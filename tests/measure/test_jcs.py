"""The fast JCS encoder is byte-identical to rfc8785 for every value the event model allows."""

from __future__ import annotations

from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from cllm._internal.jcs import canonical_json

# All of Unicode except lone surrogates (rejected before encoding), so keys and strings include
# characters outside the BMP, where UTF-16 order and code point order disagree.
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
    | _text
    | st.sampled_from(["\x00", "\x1f", "\x7f", '"', "\\", "\u2028", "\ufb33", "\U0001f600"])
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=500)
@given(st.dictionaries(_text, _values, max_size=6))
def test_matches_rfc8785(value: dict[str, Any]) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


def test_utf16_key_order_outside_the_bmp() -> None:
    # U+1F600 sorts before U+FB33 in UTF-16 (surrogate D83D < FB33) but after it by code point:
    # this output is not all-BMP, so it takes the rfc8785 path.
    value = {"\ufb33": 1, "\U0001f600": 2, "a": [True, None]}
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json(value).startswith('{"a":[true,null],"\U0001f600"'.encode())


def test_escapes_and_bmp_text_take_the_fast_path() -> None:
    value = {"s": "\u20ac$\x0f\nA'B\"\\\x7f\u2028\b\t\x1f", "\u00f6": -(2**53 - 1)}
    assert canonical_json(value) == rfc8785.dumps(value)
