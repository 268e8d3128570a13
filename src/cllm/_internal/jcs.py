"""RFC 8785 (JCS) canonical JSON, fast, for values already validated as the event model's.

``rfc8785.dumps`` is a pure-Python serialiser: on the attestation path it was most of the cost
of decoding an event log. For the values events (and evidence bindings) hold, the C encoder of
``json`` with sorted keys and no whitespace writes the same bytes, because there:

* strings: both escape exactly ``"``, ``\\`` and U+0000..U+001F, with the same short forms
  (``\\b \\t \\n \\f \\r``) and lower-case ``\\u00xx`` otherwise, and write everything else as
  UTF-8 (lone surrogates are rejected before this is called);
* integers: within +-(2**53 - 1) both write the plain decimal; booleans ``true``/``false``;
* objects: keys are strings and unique; JCS sorts them by UTF-16 code units, ``json`` by code
  points, and the two orders differ only for characters outside the Basic Multilingual Plane.

So the fast encoding is used when the output has no character outside the BMP, and anything
else goes to ``rfc8785``. Floats, out-of-range integers, non-string keys and lone surrogates
must have been rejected by the caller (``freeze_json`` does): for them the two differ.
"""

from __future__ import annotations

import json
from typing import Any, Final

import rfc8785

__all__ = ["canonical_json"]

_ENCODE: Final = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
).encode
_BMP_END: Final = "\U00010000"


def canonical_json(value: Any) -> bytes:
    """JCS bytes of ``value`` (str keys; str, int within +-(2**53 - 1), bool, None, lists,
    dicts; valid Unicode). Identical to ``rfc8785.dumps(value)`` for such values."""
    text = _ENCODE(value)
    if text.isascii() or max(text) < _BMP_END:
        return text.encode("utf-8")
    return rfc8785.dumps(value)
