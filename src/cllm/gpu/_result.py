"""The outcome of verifying one GPU's evidence: steps, verdict and claims (frozen)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cllm.errors import CllmError, GpuEvidenceFormatError
from cllm.verify import Step

__all__ = ["GpuClaims", "GpuVerification", "MeasurementClaims", "RimClaims"]

_NOT_JUDGED = frozenset({"gpu_rim_fetch", "gpu_rim_unreadable"})


@dataclass(frozen=True, slots=True)
class RimClaims:
    kind: str
    rim_id: str
    version: str
    sha384: str
    signer_expires: int
    ocsp: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rim_id": self.rim_id,
            "version": self.version,
            "sha384": self.sha384,
            "signer_expires": self.signer_expires,
            "ocsp": self.ocsp,
        }


@dataclass(frozen=True, slots=True)
class MeasurementClaims:
    matched: bool
    mismatched_indices: tuple[int, ...]
    appraised_indices: tuple[int, ...]
    skipped_indices: tuple[int, ...]
    rims: tuple[RimClaims, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "mismatched_indices": list(self.mismatched_indices),
            "appraised_indices": list(self.appraised_indices),
            "skipped_indices": list(self.skipped_indices),
            "rims": [rim.to_dict() for rim in self.rims],
        }


@dataclass(frozen=True, slots=True)
class GpuClaims:
    """What the evidence says, named as NVIDIA names it where a name exists. Hex strings are
    lowercase; opaque fields absent from the report are None."""

    arch: str | None
    chip: str | None
    firmware: str | None  # GSP or FSP
    roots: str  # the trust roots used; "NVIDIA" only for the pinned pair
    nvidia_hardware: bool
    nonce: str | None  # the request nonce, from the signed bytes
    driver_version: str | None
    vbios_version: str | None
    fwid: str | None  # from the report's opaque data
    leaf_fwid: str | None  # from the leaf certificate
    ueid: str | None
    hwmodel: str | None
    device_serial: str | None
    project: str | None
    project_sku: str | None
    chip_sku: str | None
    nvdec0_status: str | None
    protected_pcie_status: str | None
    feature_flag: str | None
    mode: str | None  # FEATURE_FLAG decoded: SPT (one GPU), MPT (multi-GPU passthrough), PPCIE
    opaque_data_version: str | None
    trailing_bytes: int
    ocsp: str | None  # worst device-chain status: good, unknown, unavailable, off
    measurements: MeasurementClaims | None  # None: no RIM appraised

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            name: getattr(self, name) for name in self.__slots__ if name != "measurements"
        }
        doc["measurements"] = self.measurements.to_dict() if self.measurements else None
        return doc


@dataclass(frozen=True, slots=True)
class GpuVerification:
    """``ok`` means every step ran and passed at ``evaluated_at`` under ``claims.roots``."""

    ok: bool
    steps: tuple[Step, ...]
    error: CllmError | None
    evaluated_at: int
    claims: GpuClaims | None

    @property
    def input_unusable(self) -> bool:
        """The evidence could not be decoded, or a RIM could not be read or fetched: nothing was
        judged (CLI exit code 2)."""
        return isinstance(self.error, GpuEvidenceFormatError) or (
            self.error is not None and self.error.code in _NOT_JUDGED
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``cllm gpu verify --json`` contract."""
        return {
            "ok": self.ok,
            "error": (
                {"code": self.error.code, "message": self.error.message} if self.error else None
            ),
            "steps": [step.to_dict() for step in self.steps],
            "claims": self.claims.to_dict() if self.claims else None,
            "evaluated_at": self.evaluated_at,
        }
