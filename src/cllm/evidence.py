"""The evidence document and its report_data binding (DESIGN.md section 5).

Shared by the server (builds it), the verifier service and the client (check it). The quote
commits to ``binding`` through ``report_data = SHA-512(JCS(binding))``; the binding carries the
client's nonce and the keys the client will then use, so evidence is fresh and bound to them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import pydantic
import rfc8785
from pydantic import BaseModel, ConfigDict, Field

from cllm.errors import EvidenceError

__all__ = [
    "EVIDENCE_VERSION",
    "NONCE_SIZE",
    "Binding",
    "Ccel",
    "Evidence",
    "TeeKind",
    "parse_evidence",
]

EVIDENCE_VERSION: Final = 1
NONCE_SIZE: Final = 32
TeeKind = Literal["tdx", "simulated-tdx"]


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EvidenceError(f"{what} is not base64", code="evidence_malformed") from exc


def _hex(value: str, what: str, size: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise EvidenceError(f"{what} is not hex", code="evidence_malformed") from exc
    if size is not None and len(raw) != size:
        raise EvidenceError(f"{what} must be {size} bytes", code="evidence_malformed")
    return raw


@dataclass(frozen=True, slots=True)
class Binding:
    """What the quote's report_data commits to."""

    nonce: bytes  # 32 bytes, chosen by the client
    signing_key: bytes  # SPKI DER of the server's per-boot response-signing key
    hpke_key: bytes  # raw X25519 public key (32 bytes) for end-to-end encryption
    tls_spki_sha256: bytes | None  # SHA-256 of the TLS certificate's SPKI, when TLS ends in the TD

    def to_json(self) -> dict[str, str | None]:
        return {
            "nonce": self.nonce.hex(),
            "signing_key": base64.b64encode(self.signing_key).decode(),
            "hpke_key": base64.b64encode(self.hpke_key).decode(),
            "tls_spki_sha256": self.tls_spki_sha256.hex() if self.tls_spki_sha256 else None,
        }

    def report_data(self) -> bytes:
        """SHA-512 of the RFC 8785 canonical JSON of the binding: the quote's REPORTDATA."""
        return hashlib.sha512(rfc8785.dumps(self.to_json())).digest()


@dataclass(frozen=True, slots=True)
class Ccel:
    table: bytes  # ACPI CCEL table
    data: bytes  # TCG crypto-agile event log area


@dataclass(frozen=True, slots=True)
class Evidence:
    """A decoded evidence document. ``event_log`` entries are kept as the JSON objects that
    were hashed (see ``cllm.measure``); ``collateral`` as its QuoteCollateralV3 JSON object."""

    tee: TeeKind
    quote: bytes
    event_log: tuple[Mapping[str, Any], ...]
    ccel: Ccel | None
    binding: Binding
    collateral: Mapping[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": EVIDENCE_VERSION,
            "tee": self.tee,
            "quote": base64.b64encode(self.quote).decode(),
            "event_log": [dict(event) for event in self.event_log],
            "ccel": (
                {
                    "table": base64.b64encode(self.ccel.table).decode(),
                    "data": base64.b64encode(self.ccel.data).decode(),
                }
                if self.ccel
                else None
            ),
            "binding": self.binding.to_json(),
            "collateral": dict(self.collateral) if self.collateral is not None else None,
        }


class _BindingModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    nonce: str = Field(pattern=r"^[0-9a-f]{64}$")
    signing_key: str = Field(max_length=4096)
    hpke_key: str = Field(max_length=64)
    tls_spki_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class _CcelModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    table: str = Field(max_length=1024)
    data: str = Field(max_length=16 * 1024 * 1024)


class _EvidenceModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1]
    tee: TeeKind
    quote: str = Field(max_length=64 * 1024)
    event_log: list[dict[str, Any]] = Field(max_length=10_000)
    ccel: _CcelModel | None
    binding: _BindingModel
    collateral: dict[str, Any] | None = None


def parse_evidence(document: Mapping[str, Any] | str | bytes) -> Evidence:
    """Decode an evidence document (a JSON object, or its text); typed errors only."""
    try:
        if isinstance(document, str | bytes):
            model = _EvidenceModel.model_validate_json(document)
        else:
            model = _EvidenceModel.model_validate(document)
    except pydantic.ValidationError as exc:
        raise EvidenceError(
            f"evidence document is malformed: {exc}", code="evidence_malformed"
        ) from exc
    hpke_key = _b64(model.binding.hpke_key, "binding.hpke_key")
    if len(hpke_key) != 32:
        raise EvidenceError("binding.hpke_key must be a raw X25519 key", code="evidence_malformed")
    binding = Binding(
        nonce=_hex(model.binding.nonce, "binding.nonce", NONCE_SIZE),
        signing_key=_b64(model.binding.signing_key, "binding.signing_key"),
        hpke_key=hpke_key,
        tls_spki_sha256=(
            _hex(model.binding.tls_spki_sha256, "binding.tls_spki_sha256", 32)
            if model.binding.tls_spki_sha256
            else None
        ),
    )
    ccel = (
        Ccel(table=_b64(model.ccel.table, "ccel.table"), data=_b64(model.ccel.data, "ccel.data"))
        if model.ccel
        else None
    )
    return Evidence(
        tee=model.tee,
        quote=_b64(model.quote, "quote"),
        event_log=tuple(model.event_log),
        ccel=ccel,
        binding=binding,
        collateral=model.collateral,
    )
