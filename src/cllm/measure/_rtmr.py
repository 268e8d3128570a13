"""The TDX measurement-register extend rule, shared by every event-log format."""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["RTMR_COUNT", "RTMR_SIZE", "ZERO_RTMR", "extend"]

RTMR_SIZE: Final = 48
RTMR_COUNT: Final = 4
ZERO_RTMR: Final = bytes(RTMR_SIZE)


def extend(register: bytes, digest: bytes) -> bytes:
    """RTMR' = SHA-384(RTMR || digest), as the TDX module extends (TDG.MR.RTMR.EXTEND)."""
    if len(register) != RTMR_SIZE or len(digest) != RTMR_SIZE:
        raise ValueError("RTMR and digest must be 48 bytes (SHA-384)")
    return hashlib.sha384(register + digest).digest()
