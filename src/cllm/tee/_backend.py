"""What the runtime needs from a TEE, whichever backend provides it (``tdx``, ``simulated``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

from cllm.errors import TeeError

__all__ = ["REPORT_DATA_SIZE", "RTMR_DIGEST_SIZE", "TeeBackend", "rtmr3_extender"]

REPORT_DATA_SIZE: Final = 64  # TDREPORT's REPORTDATA: the quote binds exactly these bytes
RTMR_DIGEST_SIZE: Final = 48  # RTMRs are SHA-384 registers; an extend takes one digest


class TeeBackend(Protocol):
    """A TEE that can quote, extend RTMR3 and hand out the firmware's event log.

    Wrong input sizes are caller bugs and raise ``ValueError``; everything the TEE itself
    refuses or cannot do raises ``TeeError`` with a stable ``code``.
    """

    @property
    def name(self) -> str:
        """``"tdx"`` or ``"simulated"``."""
        ...

    def get_quote(self, report_data: bytes) -> bytes:
        """A DCAP quote whose REPORTDATA is ``report_data`` (exactly 64 bytes)."""
        ...

    def extend_rtmr3(self, digest: bytes) -> None:
        """RTMR3 := SHA-384(RTMR3 || digest); ``digest`` is exactly 48 bytes."""
        ...

    def read_ccel(self) -> tuple[bytes, bytes] | None:
        """(ACPI CCEL table, event-log area), or ``None`` where the platform has none."""
        ...


def rtmr3_extender(backend: TeeBackend) -> Callable[[int, bytes], None]:
    """The ``extend(rtmr_index, value)`` an ``EventLog`` needs, for a backend that extends
    RTMR3 only: an event for any other register is refused, never extended into RTMR3."""

    def extend(index: int, value: bytes) -> None:
        if index != 3:
            raise TeeError(
                f"the TEE backend extends RTMR3 only, not RTMR{index}", code="rtmr_not_extendable"
            )
        backend.extend_rtmr3(value)

    return extend
