"""PCK certificate chain (certification data type 5) and the PCK certificate's SGX extension:
its parser and, beside it, its encoder (``encode_sgx_extension``, the parser's inverse).

Extension OIDs: Intel SGX PCK Certificate and CRL Profile, section "Intel SGX Extensions"
(1.2.840.113741.1.13.1.*).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography import x509

from cllm.errors import X509_DECODE_ERRORS, QuoteFormatError
from cllm.quote import _der
from cllm.quote import _layout as L
from cllm.quote._model import CertificationData

__all__ = [
    "PckExtensions",
    "encode_sgx_extension",
    "parse_pck_chain",
    "parse_pck_extensions",
    "parse_sgx_extension",
]

SGX_EXTENSIONS_OID: Final = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
_OID_PPID: Final = "1.2.840.113741.1.13.1.1"
_OID_TCB: Final = "1.2.840.113741.1.13.1.2"
_OID_PCE_ID: Final = "1.2.840.113741.1.13.1.3"
_OID_FMSPC: Final = "1.2.840.113741.1.13.1.4"
_OID_SGX_TYPE: Final = "1.2.840.113741.1.13.1.5"
_OID_PLATFORM_INSTANCE_ID: Final = "1.2.840.113741.1.13.1.6"
_OID_CONFIGURATION: Final = "1.2.840.113741.1.13.1.7"
_TCB_COMP_PREFIX: Final = _OID_TCB + "."
_PCESVN_ARC: Final = 17
_CPUSVN_ARC: Final = 18
_CONFIG_FLAGS: Final = {
    _OID_CONFIGURATION + ".1": "dynamic_platform",
    _OID_CONFIGURATION + ".2": "cached_keys",
    _OID_CONFIGURATION + ".3": "smt_enabled",
}
_CODE = "pck_extension_malformed"


@dataclass(frozen=True, slots=True)
class PckExtensions:
    ppid: bytes
    tcb_components: tuple[int, ...]  # 16 SGX TCB component SVNs
    pce_svn: int
    cpu_svn: bytes
    pce_id: bytes
    fmspc: bytes
    sgx_type: int  # 0 standard, 1 scalable, 2 scalable with integrity
    platform_instance_id: bytes | None  # multi-package platforms only
    dynamic_platform: bool | None
    cached_keys: bool | None
    smt_enabled: bool | None


def parse_pck_chain(certification: CertificationData) -> list[x509.Certificate]:
    """Return the PCK chain, leaf first, from type-5 certification data (PEM, maybe NUL-ended)."""
    if certification.type != L.CERT_PCK_CHAIN:
        raise QuoteFormatError(
            f"certification data type {certification.type} carries no PCK certificate chain "
            "(only type 5 is supported)",
            offset=0,
            code="unsupported_certification_data",
        )
    pem = certification.data.rstrip(b"\0")
    try:
        chain = x509.load_pem_x509_certificates(pem)
    except X509_DECODE_ERRORS as exc:
        raise QuoteFormatError(
            f"PCK certificate chain is not a PEM certificate list: {exc}",
            offset=0,
            code="pck_chain_malformed",
        ) from exc
    if any(cert.serial_number <= 0 for cert in chain):
        raise QuoteFormatError(
            "PCK certificate chain holds a non-positive serial number (RFC 5280 4.1.2.2)",
            offset=0,
            code="pck_chain_malformed",
        )
    if len(chain) < 2:
        raise QuoteFormatError(
            f"PCK certificate chain has {len(chain)} certificate(s); needs leaf and CA",
            offset=0,
            code="pck_chain_malformed",
        )
    return chain


def _integer(tlv: _der.Tlv, tag: int = _der.TAG_INTEGER) -> int:
    if tlv.tag != tag or not tlv.value or len(tlv.value) > 9:
        raise QuoteFormatError("expected a small INTEGER", offset=tlv.offset, code=_CODE)
    return int.from_bytes(tlv.value, "big", signed=True)


def _octets(tlv: _der.Tlv, size: int | None = None) -> bytes:
    if tlv.tag != _der.TAG_OCTET_STRING or (size is not None and len(tlv.value) != size):
        wanted = f"{size}-byte " if size is not None else ""
        raise QuoteFormatError(f"expected a {wanted}OCTET STRING", offset=tlv.offset, code=_CODE)
    return tlv.value


def _pairs(tlv: _der.Tlv) -> list[tuple[str, _der.Tlv]]:
    """SEQUENCE OF SEQUENCE { OID, value } → [(oid, value)]."""
    if tlv.tag != _der.TAG_SEQUENCE:
        raise QuoteFormatError("expected a SEQUENCE", offset=tlv.offset, code=_CODE)
    pairs = []
    for entry in _der.read_all(tlv.value, tlv.offset + 2):
        if entry.tag != _der.TAG_SEQUENCE:
            raise QuoteFormatError("expected a SEQUENCE entry", offset=entry.offset, code=_CODE)
        parts = _der.read_all(entry.value, entry.offset + 2)
        if len(parts) != 2:
            raise QuoteFormatError("entry is not {OID, value}", offset=entry.offset, code=_CODE)
        pairs.append((_der.decode_oid(parts[0]), parts[1]))
    return pairs


def _require(found: dict[str, _der.Tlv], oid: str, what: str) -> _der.Tlv:
    if oid not in found:
        raise QuoteFormatError(f"SGX extension lacks {what} ({oid})", offset=0, code=_CODE)
    return found[oid]


def parse_pck_extensions(cert: x509.Certificate) -> PckExtensions:
    """Decode the SGX extension of a PCK leaf certificate."""
    try:
        ext = cert.extensions.get_extension_for_oid(SGX_EXTENSIONS_OID).value
    except x509.ExtensionNotFound as exc:
        raise QuoteFormatError(
            "PCK certificate has no SGX extension", offset=0, code=_CODE
        ) from exc
    except X509_DECODE_ERRORS as exc:  # cryptography decodes extensions lazily
        raise QuoteFormatError(
            f"PCK certificate extensions are malformed: {exc}", offset=0, code=_CODE
        ) from exc
    if not isinstance(ext, x509.UnrecognizedExtension):
        raise QuoteFormatError("unexpected SGX extension type", offset=0, code=_CODE)
    return parse_sgx_extension(ext.value)


def parse_sgx_extension(der: bytes) -> PckExtensions:
    """Decode the DER value of the SGX extension (OID 1.2.840.113741.1.13.1)."""
    outer = _der.read_all(der)
    if len(outer) != 1:
        raise QuoteFormatError("SGX extension is not one SEQUENCE", offset=0, code=_CODE)
    found = dict(_pairs(outer[0]))

    tcb = dict(_pairs(_require(found, _OID_TCB, "TCB")))
    components = []
    for arc in range(1, 17):
        components.append(_integer(_require(tcb, f"{_TCB_COMP_PREFIX}{arc}", f"TCB comp {arc}")))
    pce_svn = _integer(_require(tcb, f"{_TCB_COMP_PREFIX}{_PCESVN_ARC}", "PCESVN"))
    cpu_svn = _octets(_require(tcb, f"{_TCB_COMP_PREFIX}{_CPUSVN_ARC}", "CPUSVN"), 16)

    flags: dict[str, bool] = {}
    if _OID_CONFIGURATION in found:
        for oid, value in _pairs(found[_OID_CONFIGURATION]):
            if oid in _CONFIG_FLAGS:
                if value.tag != _der.TAG_BOOLEAN or len(value.value) != 1:
                    raise QuoteFormatError("expected a BOOLEAN", offset=value.offset, code=_CODE)
                flags[_CONFIG_FLAGS[oid]] = value.value != b"\0"
    instance = found.get(_OID_PLATFORM_INSTANCE_ID)
    return PckExtensions(
        ppid=_octets(_require(found, _OID_PPID, "PPID"), 16),
        tcb_components=tuple(components),
        pce_svn=pce_svn,
        cpu_svn=cpu_svn,
        pce_id=_octets(_require(found, _OID_PCE_ID, "PCE-ID"), 2),
        fmspc=_octets(_require(found, _OID_FMSPC, "FMSPC"), 6),
        sgx_type=_integer(_require(found, _OID_SGX_TYPE, "SGX type"), _der.TAG_ENUMERATED),
        platform_instance_id=_octets(instance, 16) if instance is not None else None,
        dynamic_platform=flags.get("dynamic_platform"),
        cached_keys=flags.get("cached_keys"),
        smt_enabled=flags.get("smt_enabled"),
    )


# -- the encoder ---------------------------------------------------------------------------


def _entry(oid: str, value: bytes) -> bytes:
    return _der.encode_sequence(_der.encode_oid(oid), value)


def _octet_string(value: bytes, size: int, what: str) -> bytes:
    if len(value) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(value)}")
    return _der.encode_tlv(_der.TAG_OCTET_STRING, value)


def encode_sgx_extension(ext: PckExtensions) -> bytes:
    """The DER value of the SGX extension, laid out as Intel's PCK certificates have it.

    Entries come in OID order; the platform instance ID only when set, the configuration
    sequence only with the flags that are set (processor-CA certificates carry neither).
    """
    if len(ext.tcb_components) != 16:
        raise ValueError("tcb_components must list 16 SVNs")
    tcb = [
        _entry(f"{_TCB_COMP_PREFIX}{arc}", _der.encode_integer(svn))
        for arc, svn in enumerate(ext.tcb_components, start=1)
    ]
    tcb.append(_entry(f"{_TCB_COMP_PREFIX}{_PCESVN_ARC}", _der.encode_integer(ext.pce_svn)))
    tcb.append(_entry(f"{_TCB_COMP_PREFIX}{_CPUSVN_ARC}", _octet_string(ext.cpu_svn, 16, "CPUSVN")))
    entries = [
        _entry(_OID_PPID, _octet_string(ext.ppid, 16, "PPID")),
        _entry(_OID_TCB, _der.encode_sequence(*tcb)),
        _entry(_OID_PCE_ID, _octet_string(ext.pce_id, 2, "PCE-ID")),
        _entry(_OID_FMSPC, _octet_string(ext.fmspc, 6, "FMSPC")),
        _entry(_OID_SGX_TYPE, _der.encode_integer(ext.sgx_type, _der.TAG_ENUMERATED)),
    ]
    if ext.platform_instance_id is not None:
        instance = _octet_string(ext.platform_instance_id, 16, "platform instance ID")
        entries.append(_entry(_OID_PLATFORM_INSTANCE_ID, instance))
    flags = {
        "dynamic_platform": ext.dynamic_platform,
        "cached_keys": ext.cached_keys,
        "smt_enabled": ext.smt_enabled,
    }
    configuration = [
        _entry(oid, _der.encode_tlv(_der.TAG_BOOLEAN, b"\xff" if flags[name] else b"\x00"))
        for oid, name in _CONFIG_FLAGS.items()
        if flags[name] is not None
    ]
    if configuration:
        entries.append(_entry(_OID_CONFIGURATION, _der.encode_sequence(*configuration)))
    return _der.encode_sequence(*entries)
