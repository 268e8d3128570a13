"""Verification collateral: the QuoteCollateralV3 JSON shape and the signed Intel documents in it.

``Collateral`` holds the bytes exactly as Intel signed them; ``TcbInfo`` and ``QeIdentity`` are
their decoded form (``_intel_json``, beside their encoders). TCB info and QE identity
signatures cover the exact bytes of the inner JSON object, so those are never re-serialised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cllm.errors import CollateralFormatError
from cllm.verify._intel_json import (
    QeIdentity,
    QeTcbLevel,
    TcbComponent,
    TcbInfo,
    TcbLevel,
    TdxModuleIdentity,
    parse_qe_identity,
    parse_tcb_info,
)

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
