"""Replayed RTMR values: the one result type every event-log format replays into."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cllm.measure._rtmr import RTMR_COUNT, RTMR_SIZE, ZERO_RTMR, extend

__all__ = ["Rtmrs", "replay_digests"]


@dataclass(frozen=True, slots=True)
class Rtmrs:
    """RTMR0..RTMR3 as raw 48-byte values (quote byte order)."""

    rtmr0: bytes = ZERO_RTMR
    rtmr1: bytes = ZERO_RTMR
    rtmr2: bytes = ZERO_RTMR
    rtmr3: bytes = ZERO_RTMR

    def __post_init__(self) -> None:
        for index, value in enumerate(self.as_tuple()):
            if len(value) != RTMR_SIZE:
                raise ValueError(f"rtmr{index} must be {RTMR_SIZE} bytes, got {len(value)}")

    @classmethod
    def from_sequence(cls, values: Iterable[bytes]) -> Rtmrs:
        items = tuple(values)
        if len(items) != RTMR_COUNT:
            raise ValueError(f"expected {RTMR_COUNT} RTMR values, got {len(items)}")
        return cls(*items)

    def as_tuple(self) -> tuple[bytes, bytes, bytes, bytes]:
        return (self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3)

    def __getitem__(self, index: int) -> bytes:
        return self.as_tuple()[index]

    def as_hex(self) -> dict[str, str]:
        """``{"rtmr0": hex, ..., "rtmr3": hex}``, the shape the corpus and evidence use."""
        return {f"rtmr{index}": value.hex() for index, value in enumerate(self.as_tuple())}


def replay_digests(measurements: Iterable[tuple[int, bytes]]) -> Rtmrs:
    """Extend ``(rtmr_index, sha384_digest)`` pairs in order, every register starting at zero.

    The callers (format parsers) have already validated indexes and digest sizes; a bad pair
    here is a programming error, hence ``ValueError`` rather than ``EventLogError``.
    """
    registers = [ZERO_RTMR] * RTMR_COUNT
    for index, digest in measurements:
        if not 0 <= index < RTMR_COUNT:
            raise ValueError(f"RTMR index {index} out of range 0..{RTMR_COUNT - 1}")
        registers[index] = extend(registers[index], digest)
    return Rtmrs.from_sequence(registers)
