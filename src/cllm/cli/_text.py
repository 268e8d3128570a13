"""Printing what a server or a verifier chose (event names, reasons, messages, answers) as plain
text: never as rich markup (``[/]`` would crash the CLI, ``[green]`` repaint it) and with every
control character escaped, so ANSI sequences cannot move the cursor, recolour or overwrite the
verdict line, and bidirectional overrides cannot reorder what is shown."""

from __future__ import annotations

import re
from typing import Final

from rich.text import Text

__all__ = ["outside", "outside_text"]

# C0 and C1 controls, DEL, and the Unicode bidi embeddings/overrides/isolates.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_KEEP_IN_ANSWERS: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def outside(value: object, *, keep_newlines: bool = False) -> str:
    """``value`` as a string with control characters written as ``\\xNN`` / ``\\uNNNN``
    (newlines and tabs kept when ``keep_newlines``: a model's answer has lines)."""
    pattern = _KEEP_IN_ANSWERS if keep_newlines else _CONTROL
    return pattern.sub(_escape, str(value))


def outside_text(value: object, *, style: str = "") -> Text:
    """``outside(value)`` as a rich ``Text``: printed literally, never parsed as markup."""
    return Text(outside(value), style=style)
