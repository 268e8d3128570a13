"""Several GPUs of one machine: each verified alone, then as a set.

A set passes only when every GPU passes and the set is coherent: not empty, one architecture,
one multi-GPU mode (FEATURE_FLAG, where reported), and no device twice (by its leaf serial,
``ueid``, or its per-chip CA serial): one GPU's evidence shown twice must not count as two GPUs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cllm.errors import CllmError, VerificationError
from cllm.gpu._chain import GpuArch
from cllm.gpu._ocsp import OcspPolicy
from cllm.gpu._pipeline import GpuVerifier
from cllm.gpu._result import GpuVerification
from cllm.gpu._rim import RimKind
from cllm.gpu._sources import RimSource

__all__ = ["GpuBundleVerification", "verify_bundle"]


@dataclass(frozen=True, slots=True)
class GpuBundleVerification:
    ok: bool
    results: tuple[GpuVerification, ...]
    error: CllmError | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "error": (
                {"code": self.error.code, "message": self.error.message} if self.error else None
            ),
            "gpus": [result.to_dict() for result in self.results],
        }


def _coherence(results: tuple[GpuVerification, ...]) -> CllmError | None:
    claims = [r.claims for r in results if r.claims is not None]
    if len({c.arch for c in claims}) > 1:
        return VerificationError(
            "the GPUs are of different architectures", code="gpu_bundle_mixed_arch"
        )
    if len({c.feature_flag for c in claims}) > 1:
        return VerificationError(
            "the GPUs report different multi-GPU modes (FEATURE_FLAG)",
            code="gpu_bundle_mixed_mode",
        )
    for name in ("ueid", "device_serial"):
        values = [getattr(c, name) for c in claims if getattr(c, name) is not None]
        if len(set(values)) != len(values):
            return VerificationError(
                f"one GPU appears more than once (same {name})", code="gpu_bundle_duplicate_device"
            )
    return None


def verify_bundle(
    verifier: GpuVerifier,
    entries: Sequence[tuple[bytes, bytes | str]],
    *,
    expected_nonce: bytes,
    rims: RimSource,
    rims_required: Sequence[RimKind],
    ocsp: OcspPolicy,
    at: int | datetime,
    declared_arch: GpuArch | None = None,
) -> GpuBundleVerification:
    """Verify ``(report, chain)`` for every GPU with one expected nonce, then the set."""
    if not entries:
        error = VerificationError("no GPU evidence given", code="gpu_bundle_empty")
        return GpuBundleVerification(False, (), error)
    results = tuple(
        verifier.verify(
            report,
            chain=chain,
            expected_nonce=expected_nonce,
            rims=rims,
            rims_required=rims_required,
            ocsp=ocsp,
            at=at,
            declared_arch=declared_arch,
        )
        for report, chain in entries
    )
    for index, result in enumerate(results):
        if result.error is not None:
            failed = VerificationError(
                f"GPU {index}: {result.error.message}", code=result.error.code
            )
            return GpuBundleVerification(False, results, failed)
    incoherent = _coherence(results)
    return GpuBundleVerification(incoherent is None, results, incoherent)
