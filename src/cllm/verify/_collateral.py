"""Verification collateral: the QuoteCollateralV3 JSON shape and the signed Intel documents in it.

``Collateral`` holds the bytes exactly as Intel signed them; ``TcbInfo`` and ``QeIdentity`` are
their decoded form (pydantic, since they are JSON from outside). TCB info and QE identity
signatures cover the exact bytes of the inner JSON object, so those are never re-serialised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import pydantic
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from cllm.errors import CollateralFormatError
from cllm.verify._status import TcbStatus

__all__ = [
    "Collateral",
    "QeIdentity",
    "QeTcbLevel",
    "TcbComponent",
    "TcbInfo",
    "TcbLevel",
    "TdxModuleIdentity",
    "load_collateral",
    "parse_qe_identity",
    "parse_tcb_info",
]


def _hex_bytes(value: Any, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise CollateralFormatError(f"{what} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise CollateralFormatError(f"{what} is not hex") from exc
    if size is not None and len(raw) != size:
        raise CollateralFormatError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def pem_crl_to_der(pem: bytes, what: str) -> bytes:
    try:
        return x509.load_pem_x509_crl(pem).public_bytes(Encoding.DER)
    except ValueError as exc:
        raise CollateralFormatError(f"{what} is not a PEM CRL") from exc


def _crl_der(value: Any, what: str) -> bytes:
    """CRLs arrive as hex of DER (QuoteCollateralV3) or PEM (some PCCS responses)."""
    if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        return pem_crl_to_der(_utf8(value, what), what)
    return _hex_bytes(value, what)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise CollateralFormatError(f"{what} must be a non-empty string")
    _utf8(value, what)
    return value


def _utf8(value: str, what: str) -> bytes:
    # JSON can carry lone surrogates (\ud800), which no UTF-8 text (and so no signed Intel
    # document, PEM or hex) contains.
    try:
        return value.encode()
    except UnicodeEncodeError as exc:
        raise CollateralFormatError(
            f"{what} is not valid Unicode text (a lone surrogate at {exc.start})",
            code="collateral_malformed",
        ) from exc


@dataclass(frozen=True, slots=True)
class Collateral:
    """One collateral set for one quote (dcap-qvl ``QuoteCollateralV3`` shape)."""

    pck_crl_issuer_chain: str
    root_ca_crl: bytes
    pck_crl: bytes
    tcb_info_issuer_chain: str
    tcb_info: bytes
    tcb_info_signature: bytes
    qe_identity_issuer_chain: str
    qe_identity: bytes
    qe_identity_signature: bytes
    pck_certificate_chain: str | None = None

    @classmethod
    def from_json_dict(cls, doc: Any) -> Collateral:
        if not isinstance(doc, dict):
            raise CollateralFormatError("collateral must be a JSON object")
        try:
            chain = doc.get("pck_certificate_chain")
            return cls(
                pck_crl_issuer_chain=_text(doc["pck_crl_issuer_chain"], "pck_crl_issuer_chain"),
                root_ca_crl=_crl_der(doc["root_ca_crl"], "root_ca_crl"),
                pck_crl=_crl_der(doc["pck_crl"], "pck_crl"),
                tcb_info_issuer_chain=_text(doc["tcb_info_issuer_chain"], "tcb_info_issuer_chain"),
                tcb_info=_text(doc["tcb_info"], "tcb_info").encode(),
                tcb_info_signature=_hex_bytes(doc["tcb_info_signature"], "tcb_info_signature", 64),
                qe_identity_issuer_chain=_text(
                    doc["qe_identity_issuer_chain"], "qe_identity_issuer_chain"
                ),
                qe_identity=_text(doc["qe_identity"], "qe_identity").encode(),
                qe_identity_signature=_hex_bytes(
                    doc["qe_identity_signature"], "qe_identity_signature", 64
                ),
                pck_certificate_chain=_text(chain, "pck_certificate_chain") if chain else None,
            )
        except KeyError as exc:
            raise CollateralFormatError(f"collateral lacks {exc.args[0]!r}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Collateral:
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise CollateralFormatError(f"collateral is not JSON: {exc}") from exc
        return cls.from_json_dict(doc)

    def to_json_dict(self) -> dict[str, str]:
        doc = {
            "pck_crl_issuer_chain": self.pck_crl_issuer_chain,
            "root_ca_crl": self.root_ca_crl.hex(),
            "pck_crl": self.pck_crl.hex(),
            "tcb_info_issuer_chain": self.tcb_info_issuer_chain,
            "tcb_info": self.tcb_info.decode(),
            "tcb_info_signature": self.tcb_info_signature.hex(),
            "qe_identity_issuer_chain": self.qe_identity_issuer_chain,
            "qe_identity": self.qe_identity.decode(),
            "qe_identity_signature": self.qe_identity_signature.hex(),
        }
        if self.pck_certificate_chain is not None:
            doc["pck_certificate_chain"] = self.pck_certificate_chain
        return doc


def load_collateral(path: str | Path) -> Collateral:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CollateralFormatError(f"cannot read collateral {path}: {exc.strerror}") from exc
    return Collateral.from_json(raw)


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore"
    )


class TcbComponent(_Model):
    svn: int = Field(ge=0, le=255)


class Tcb(_Model):
    sgxtcbcomponents: tuple[TcbComponent, ...] = Field(min_length=16, max_length=16)
    pcesvn: int = Field(ge=0, le=0xFFFF)
    tdxtcbcomponents: tuple[TcbComponent, ...] | None = Field(
        default=None, min_length=16, max_length=16
    )


class TcbLevel(_Model):
    tcb: Tcb
    tcb_date: datetime
    tcb_status: TcbStatus
    advisory_ids: tuple[str, ...] = Field(default=(), alias="advisoryIDs")

    @cached_property
    def sgx_svns(self) -> tuple[int, ...]:
        return tuple(c.svn for c in self.tcb.sgxtcbcomponents)

    @cached_property
    def tdx_svns(self) -> tuple[int, ...] | None:
        components = self.tcb.tdxtcbcomponents
        return None if components is None else tuple(c.svn for c in components)


class ModuleTcb(_Model):
    isvsvn: int = Field(ge=0, le=255)


class ModuleTcbLevel(_Model):
    tcb: ModuleTcb
    tcb_date: datetime
    tcb_status: TcbStatus
    advisory_ids: tuple[str, ...] = Field(default=(), alias="advisoryIDs")


class TdxModule(_Model):
    mrsigner: str = Field(pattern=r"^[0-9a-fA-F]{96}$")
    attributes: str = Field(pattern=r"^[0-9a-fA-F]{16}$")
    attributes_mask: str = Field(pattern=r"^[0-9a-fA-F]{16}$")


class TdxModuleIdentity(TdxModule):
    id: str
    tcb_levels: tuple[ModuleTcbLevel, ...]


class TcbInfo(_Model):
    id: Literal["SGX", "TDX"]
    version: Literal[3]
    issue_date: datetime
    next_update: datetime
    fmspc: str = Field(pattern=r"^[0-9a-fA-F]{12}$")
    pce_id: str = Field(pattern=r"^[0-9a-fA-F]{4}$")
    tcb_type: int
    tcb_evaluation_data_number: int
    tdx_module: TdxModule | None = None
    tdx_module_identities: tuple[TdxModuleIdentity, ...] | None = None
    tcb_levels: tuple[TcbLevel, ...] = Field(min_length=1)

    @cached_property
    def validity(self) -> tuple[int, int]:
        """issueDate .. nextUpdate in unix seconds, both inclusive."""
        return int(self.issue_date.timestamp()), int(self.next_update.timestamp())


class QeTcb(_Model):
    isvsvn: int = Field(ge=0, le=0xFFFF)


class QeTcbLevel(_Model):
    tcb: QeTcb
    tcb_date: datetime
    tcb_status: TcbStatus
    advisory_ids: tuple[str, ...] = Field(default=(), alias="advisoryIDs")


class QeIdentity(_Model):
    id: Literal["QE", "QVE", "TD_QE"]
    version: Literal[2]
    issue_date: datetime
    next_update: datetime
    tcb_evaluation_data_number: int
    miscselect: str = Field(pattern=r"^[0-9a-fA-F]{8}$")
    miscselect_mask: str = Field(pattern=r"^[0-9a-fA-F]{8}$")
    attributes: str = Field(pattern=r"^[0-9a-fA-F]{32}$")
    attributes_mask: str = Field(pattern=r"^[0-9a-fA-F]{32}$")
    mrsigner: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    isvprodid: int = Field(ge=0, le=0xFFFF)
    tcb_levels: tuple[QeTcbLevel, ...] = Field(min_length=1)

    @cached_property
    def validity(self) -> tuple[int, int]:
        """issueDate .. nextUpdate in unix seconds, both inclusive."""
        return int(self.issue_date.timestamp()), int(self.next_update.timestamp())


def _load_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CollateralFormatError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise CollateralFormatError(f"{what} must be a JSON object")
    return doc


def parse_tcb_info(raw: bytes) -> TcbInfo:
    """Decode signed TCB info text; ``tcb_levels`` come back in Intel's evaluation order."""
    doc = _load_object(raw, "TCB info")
    version = doc.get("version")
    if version != 3 or "id" not in doc:
        raise CollateralFormatError(
            f"TCB info version {version!r}{'' if 'id' in doc else ' without id'} is not supported "
            "(Intel PCS v4 TCB info version 3 is required)",
            code="unsupported_collateral_format",
        )
    try:
        info = TcbInfo.model_validate(doc)
    except pydantic.ValidationError as exc:
        raise CollateralFormatError(f"TCB info is malformed: {exc}") from exc
    if info.id == "TDX" and any(level.tcb.tdxtcbcomponents is None for level in info.tcb_levels):
        raise CollateralFormatError("TDX TCB info level without tdxtcbcomponents")
    if info.id == "TDX" and info.tdx_module is None:
        raise CollateralFormatError("TDX TCB info without tdxModule")
    ordered = tuple(sorted(info.tcb_levels, key=_level_order, reverse=True))
    return info.model_copy(update={"tcb_levels": ordered})


def _level_order(level: TcbLevel) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
    """Intel QVL's TcbLevel ordering: SGX component SVNs, then PCESVN, then TDX component
    SVNs, compared lexicographically. Levels are tried highest first (a stable sort keeps
    Intel's listing order among equal keys, as dcap-qvl does)."""
    tdx = level.tcb.tdxtcbcomponents or ()
    return (
        tuple(c.svn for c in level.tcb.sgxtcbcomponents),
        level.tcb.pcesvn,
        tuple(c.svn for c in tdx),
    )


def parse_qe_identity(raw: bytes) -> QeIdentity:
    doc = _load_object(raw, "QE identity")
    if doc.get("version") != 2:
        raise CollateralFormatError(
            f"QE identity version {doc.get('version')!r} is not supported (2 is required)",
            code="unsupported_collateral_format",
        )
    try:
        return QeIdentity.model_validate(doc)
    except pydantic.ValidationError as exc:
        raise CollateralFormatError(f"QE identity is malformed: {exc}") from exc
