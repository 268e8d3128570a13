"""The ``gpu`` field of an evidence document (docs/protocol.md, "GPU evidence"): one GPU
collection per quote, its nonce derived from what the quote binds, its digest in the binding.

``gpu_nonce`` gives every GPU report's 32-byte SPDM nonce: SHA-256 of a domain string, the
*anchor* (the batch's Merkle root for version 2 evidence, the client's nonce for version 1) and
the digest of the server's keys. The anchor commits to the client's fresh nonce, so no report
made before the client asked can carry it; one root per batch keeps one collection per quote.
The binding then carries ``gpu_sha384 = SHA-384(JCS(gpu field))``, so the quote vouches for
exactly these reports, chains and statements.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from cllm.errors import EvidenceError
from cllm.gpu._backend import GPU_NONCE_SIZE, GpuDevice
from cllm.measure import canonical_json

__all__ = [
    "GPU_EVIDENCE_VERSION",
    "GPU_NONCE_DOMAIN",
    "GpuDocument",
    "GpuReportEntry",
    "gpu_document_digest",
    "gpu_nonce",
    "parse_gpu_document",
]

GPU_EVIDENCE_VERSION: Final = 1
GPU_NONCE_DOMAIN: Final = b"cllm/gpu-nonce/v1"
GpuDocumentStatus = Literal["attested", "unattested"]
_MAX_GPUS: Final = 64
_MAX_REPORT_B64: Final = 16 * 1024  # reports are at most 0x2000 bytes (NVML's buffer)
_MAX_CHAIN_B64: Final = 16 * 1024  # 0x1400 bytes of PEM
_MAX_RIM_B64: Final = 256 * 1024
_MAX_OCSP_B64: Final = 8 * 1024


def gpu_nonce(*, anchor: bytes, keys_digest: bytes) -> bytes:
    """SHA-256(``cllm/gpu-nonce/v1`` || anchor (32 bytes) || keys digest (32 bytes))."""
    if len(anchor) != 32 or len(keys_digest) != 32:
        raise ValueError("the GPU nonce is derived from two 32-byte values")
    nonce = hashlib.sha256(GPU_NONCE_DOMAIN + anchor + keys_digest).digest()
    assert len(nonce) == GPU_NONCE_SIZE
    return nonce


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EvidenceError(f"gpu.{what} is not base64", code="gpu_evidence_malformed") from exc


@dataclass(frozen=True, slots=True)
class GpuReportEntry:
    """One GPU's report (SPDM request || signed response) and PEM device chain, leaf first."""

    index: int
    arch: str
    report: bytes
    chain_pem: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "arch": self.arch,
            "evidence": _b64(self.report),
            "certificate": _b64(self.chain_pem),
        }


@dataclass(frozen=True, slots=True)
class GpuDocument:
    """What the server says about its GPUs for one quote.

    ``attested``: one report per present GPU for the derived nonce. ``unattested``: GPUs are
    present (``present``) but gave no report (``reason``: ``gpu_cc_off``, ...). ``simulated``
    selects the roots a verifier checks under; it proves nothing by itself. ``rims`` and
    ``ocsp`` are documents the verifier checks like any other (signed RIMs, signed OCSP
    answers), carried so a verifier need not fetch them."""

    status: GpuDocumentStatus
    simulated: bool
    reason: str | None
    cc: str  # on, off, devtools (the driver's confidential-computing state)
    multi_gpu_mode: str  # none, protected-pcie, nvle, unknown
    present: tuple[GpuDevice, ...]
    reports: tuple[GpuReportEntry, ...]
    rims: tuple[bytes, ...] = ()
    ocsp: tuple[bytes, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": GPU_EVIDENCE_VERSION,
            "status": self.status,
            "simulated": self.simulated,
            "reason": self.reason,
            "cc": self.cc,
            "multi_gpu_mode": self.multi_gpu_mode,
            "present": [device.to_dict() for device in self.present],
            "reports": [entry.to_json() for entry in self.reports],
            "rims": [_b64(rim) for rim in self.rims],
            "ocsp": [_b64(answer) for answer in self.ocsp],
        }


def gpu_document_digest(document: Mapping[str, Any]) -> bytes:
    """SHA-384 of the RFC 8785 canonical JSON of the ``gpu`` field, as sent."""
    try:
        return hashlib.sha384(canonical_json(document)).digest()
    except (TypeError, ValueError) as exc:
        raise EvidenceError(
            "the gpu field cannot be canonicalised", code="gpu_evidence_malformed"
        ) from exc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Device(_Strict):
    index: int = Field(ge=0, lt=_MAX_GPUS)
    name: str = Field(max_length=256)
    uuid: str = Field(max_length=256)
    arch: str = Field(max_length=32)
    vbios_version: str = Field(max_length=64)
    driver_version: str = Field(max_length=64)


class _Report(_Strict):
    index: int = Field(ge=0, lt=_MAX_GPUS)
    arch: str = Field(max_length=32)
    evidence: str = Field(max_length=_MAX_REPORT_B64)
    certificate: str = Field(max_length=_MAX_CHAIN_B64)


class _Document(_Strict):
    version: Literal[1]
    status: GpuDocumentStatus
    simulated: bool
    reason: str | None = Field(max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    cc: Literal["on", "off", "devtools"]
    multi_gpu_mode: Literal["none", "protected-pcie", "nvle", "unknown"]
    present: list[_Device] = Field(max_length=_MAX_GPUS)
    reports: list[_Report] = Field(max_length=_MAX_GPUS)
    rims: list[Annotated[str, Field(max_length=_MAX_RIM_B64)]] = Field(max_length=8)
    ocsp: list[Annotated[str, Field(max_length=_MAX_OCSP_B64)]] = Field(max_length=64)


def parse_gpu_document(document: object) -> GpuDocument:
    """Decode the ``gpu`` field; ``gpu_evidence_malformed`` for anything else."""
    try:
        model = _Document.model_validate(document)
    except pydantic.ValidationError as exc:
        raise EvidenceError(
            f"the gpu field is malformed: {exc.error_count()} problem(s), first: "
            f"{exc.errors()[0]['msg']} at {'.'.join(str(p) for p in exc.errors()[0]['loc'])}",
            code="gpu_evidence_malformed",
        ) from exc
    if model.status == "attested" and (not model.reports or model.reason is not None):
        raise EvidenceError(
            "attested GPU evidence carries reports and no reason", code="gpu_evidence_malformed"
        )
    if model.status == "unattested" and (model.reports or model.reason is None):
        raise EvidenceError(
            "unattested GPU evidence carries a reason and no reports",
            code="gpu_evidence_malformed",
        )
    indices = [report.index for report in model.reports]
    if len(set(indices)) != len(indices):
        raise EvidenceError("two reports for one GPU index", code="gpu_evidence_malformed")
    return GpuDocument(
        status=model.status,
        simulated=model.simulated,
        reason=model.reason,
        cc=model.cc,
        multi_gpu_mode=model.multi_gpu_mode,
        present=tuple(
            GpuDevice(
                index=d.index,
                name=d.name,
                uuid=d.uuid,
                arch=d.arch,
                vbios_version=d.vbios_version,
                driver_version=d.driver_version,
            )
            for d in model.present
        ),
        reports=tuple(
            GpuReportEntry(
                index=r.index,
                arch=r.arch,
                report=_unb64(r.evidence, "reports.evidence"),
                chain_pem=_unb64(r.certificate, "reports.certificate"),
            )
            for r in model.reports
        ),
        rims=tuple(_unb64(rim, "rims") for rim in model.rims),
        ocsp=tuple(_unb64(answer, "ocsp") for answer in model.ocsp),
    )
