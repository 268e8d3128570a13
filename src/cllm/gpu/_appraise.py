"""Measurement appraisal: a report's SPDM blocks against the driver and VBIOS RIMs.

RIM index i is SPDM block i + 1. Each active golden entry must have a runtime block of the same
size equal to one of its alternatives; an index active in both RIMs is a conflict; index 35
(NVDEC0) is skipped when the report says NVDEC0 is disabled (``0x55``). Inactive entries are
ignored and runtime blocks without a golden entry are not judged (NVIDIA's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cllm.errors import VerificationError
from cllm.gpu import _layout as L
from cllm.gpu._report import GpuReport
from cllm.gpu._rim import Rim

__all__ = ["Appraisal", "appraise"]

NVDEC0_INDEX: Final = 35


@dataclass(frozen=True, slots=True)
class Appraisal:
    matched: bool
    mismatched_indices: tuple[int, ...]
    appraised_indices: tuple[int, ...]
    skipped_indices: tuple[int, ...]


def appraise(report: GpuReport, rims: tuple[Rim, ...]) -> Appraisal:
    """Compare; raises ``gpu_rim_index_conflict`` when two RIMs claim one index."""
    owners: dict[int, Rim] = {}
    for rim in rims:
        for index in rim.active_indices:
            if index in owners:
                raise VerificationError(
                    f"measurement index {index} is active in both the {owners[index].kind} and "
                    f"the {rim.kind} RIM",
                    code="gpu_rim_index_conflict",
                )
            owners[index] = rim
    nvdec0_off = report.opaque.nvdec0_status == L.NVDEC0_DISABLED
    values = report.values()
    mismatched: list[int] = []
    appraised: list[int] = []
    skipped: list[int] = []
    for rim in rims:
        for golden in rim.measurements:
            if not golden.active:
                continue
            if golden.index == NVDEC0_INDEX and nvdec0_off:
                skipped.append(golden.index)
                continue
            appraised.append(golden.index)
            value = values.get(golden.index + 1)
            if value is None or len(value) != golden.size or value not in golden.alternatives:
                mismatched.append(golden.index)
    return Appraisal(
        matched=not mismatched,
        mismatched_indices=tuple(sorted(mismatched)),
        appraised_indices=tuple(sorted(appraised)),
        skipped_indices=tuple(skipped),
    )
