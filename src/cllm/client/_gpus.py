"""The verdict's GPUs, typed: a read-only view of the ``gpus`` claim (docs/client.md "GPUs").

The claim comes from a verified token (or the local appraisal), but its entries are still read
defensively: a field of the wrong type reads as absent, and an entry that does not say plainly
that it is verified hardware evidence never reads as such (unknown status: ``rejected``;
``simulated`` unless it is exactly ``false``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

__all__ = ["GpuEntry", "GpuError", "GpuMeasurements", "GpuStatus", "gpus_of"]

GpuStatus = Literal["verified", "rejected", "unattested"]
MeasurementResult = Literal["matched", "mismatched", "not_appraised"]

_STATUSES: Final = frozenset({"verified", "rejected", "unattested"})
_RESULTS: Final = frozenset({"matched", "mismatched", "not_appraised"})


@dataclass(frozen=True, slots=True)
class GpuMeasurements:
    """The GPU's measurements against its RIMs: ``not_appraised`` when no RIM was compared."""

    result: MeasurementResult
    mismatched_indices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class GpuError:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class GpuEntry:
    """One GPU of the attested system, as the verdict describes it."""

    index: int
    status: GpuStatus  # unattested: present, but the server gave no report for it
    simulated: bool
    arch: str | None  # hopper, blackwell
    hwmodel: str | None
    ueid: str | None
    driver_version: str | None
    vbios_version: str | None
    mode: str | None  # CC mode as the evidence says: cc, devtools, ppcie, mgpu
    measurements: GpuMeasurements
    rim_ids: tuple[str, ...]
    ocsp: str  # good, unknown, revoked, off, not_checked
    error: GpuError | None

    @property
    def hardware_verified(self) -> bool:
        """Verified, and from real NVIDIA hardware (not a simulated GPU)."""
        return self.status == "verified" and not self.simulated


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _entry(position: int, raw: object) -> GpuEntry:
    doc: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    status = doc.get("status")
    measured = doc.get("measurements")
    measured = measured if isinstance(measured, Mapping) else {}
    result = measured.get("result")
    indices = measured.get("mismatched_indices")
    rim_ids = doc.get("rim_ids")
    error = doc.get("error")
    index = _int(doc.get("index"))
    return GpuEntry(
        index=position if index is None else index,
        status=cast(GpuStatus, status) if status in _STATUSES else "rejected",
        simulated=doc.get("simulated") is not False,
        arch=_text(doc.get("arch")),
        hwmodel=_text(doc.get("hwmodel")),
        ueid=_text(doc.get("ueid")),
        driver_version=_text(doc.get("driver_version")),
        vbios_version=_text(doc.get("vbios_version")),
        mode=_text(doc.get("mode")),
        measurements=GpuMeasurements(
            result=cast(MeasurementResult, result) if result in _RESULTS else "not_appraised",
            mismatched_indices=tuple(
                i for i in (indices if isinstance(indices, list) else []) if _int(i) is not None
            ),
        ),
        rim_ids=tuple(r for r in (rim_ids if isinstance(rim_ids, list) else []) if _text(r)),
        ocsp=_text(doc.get("ocsp")) or "not_checked",
        error=(
            GpuError(str(error.get("code")), str(error.get("message")))
            if isinstance(error, Mapping)
            else None
        ),
    )


def gpus_of(claims: Mapping[str, Any]) -> tuple[GpuEntry, ...]:
    """The ``gpus`` claim as entries (empty when the claim is absent or not a list)."""
    gpus = claims.get("gpus")
    if not isinstance(gpus, list):
        return ()
    return tuple(_entry(position, raw) for position, raw in enumerate(gpus))
