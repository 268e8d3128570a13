"""Quote encoders: the exact inverses of ``_parse`` (header, TD report 1.0/1.5, SGX report,
certification data, signature data, whole quotes v3/v4/v5).

Used to build quotes (the simulated TEE backend, tests). Every field is checked against its
size before it is written, because a short field would silently shift every later offset.
``parse_quote(encode_quote(h, b, s))`` gives back ``h``, ``b`` and ``s``, and for a parsed quote
``q`` of bytes ``d``, ``encode_quote(q.header, q.body, q.signature_data) == d[: q.length]``.
"""

from __future__ import annotations

from cllm.quote import _layout as L
from cllm.quote._model import (
    CertificationData,
    EnclaveReport,
    QuoteHeader,
    QuoteSignatureData,
    TdReport,
)

__all__ = [
    "encode_certification_data",
    "encode_enclave_report",
    "encode_header",
    "encode_quote",
    "encode_signature_data",
    "encode_signed_data",
    "encode_td_report",
]


def _put(buf: bytearray, offset: int, value: bytes, size: int, what: str) -> None:
    if len(value) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(value)}")
    buf[offset : offset + size] = value


def _put_int(buf: bytearray, offset: int, value: int, size: int, what: str) -> None:
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(f"{what} {value} does not fit in {size} bytes")
    buf[offset : offset + size] = value.to_bytes(size, "little")


def encode_header(header: QuoteHeader) -> bytes:
    """The 48-byte quote header."""
    buf = bytearray(L.HEADER_SIZE)
    _put_int(buf, L.HDR_VERSION, header.version, 2, "version")
    _put_int(buf, L.HDR_ATT_KEY_TYPE, header.attestation_key_type, 2, "attestation key type")
    _put_int(buf, L.HDR_TEE_TYPE, header.tee_type, 4, "TEE type")
    _put_int(buf, L.HDR_QE_SVN, header.qe_svn, 2, "QE SVN")
    _put_int(buf, L.HDR_PCE_SVN, header.pce_svn, 2, "PCE SVN")
    _put(buf, L.HDR_QE_VENDOR_ID, header.qe_vendor_id, L.QE_VENDOR_ID_SIZE, "QE vendor ID")
    _put(buf, L.HDR_USER_DATA, header.user_data, L.USER_DATA_SIZE, "user data")
    return bytes(buf)


def encode_enclave_report(report: EnclaveReport) -> bytes:
    """The 384-byte SGX REPORT body.

    The fields are authoritative. Reserved bytes are taken from ``report.raw`` when it holds a
    full report (so ``encode(parse(b)) == b`` even for reports with non-zero reserved bytes),
    and are zero otherwise (``raw=b""`` when building a report from scratch).
    """
    if len(report.raw) == L.ENCLAVE_REPORT_SIZE:
        buf = bytearray(report.raw)
    else:
        buf = bytearray(L.ENCLAVE_REPORT_SIZE)
    _put(buf, L.ER_CPU_SVN, report.cpu_svn, 16, "CPUSVN")
    _put_int(buf, L.ER_MISC_SELECT, report.misc_select, 4, "MISCSELECT")
    _put(buf, L.ER_ATTRIBUTES, report.attributes, 16, "ATTRIBUTES")
    _put(buf, L.ER_MR_ENCLAVE, report.mr_enclave, 32, "MRENCLAVE")
    _put(buf, L.ER_MR_SIGNER, report.mr_signer, 32, "MRSIGNER")
    _put_int(buf, L.ER_ISV_PROD_ID, report.isv_prod_id, 2, "ISVPRODID")
    _put_int(buf, L.ER_ISV_SVN, report.isv_svn, 2, "ISVSVN")
    _put(buf, L.ER_REPORT_DATA, report.report_data, 64, "REPORTDATA")
    return bytes(buf)


def encode_td_report(report: TdReport) -> bytes:
    """TD report 1.0 (584 bytes) or, when it has the 1.5 fields, TD report 1.5 (648 bytes)."""
    is_15 = report.mr_servicetd is not None
    if is_15 != (report.tee_tcb_svn2 is not None):
        raise ValueError("TD report 1.5 needs both tee_tcb_svn2 and mr_servicetd; 1.0 neither")
    buf = bytearray(L.TD_REPORT_15_SIZE if is_15 else L.TD_REPORT_10_SIZE)
    fields: tuple[tuple[int, bytes, int, str], ...] = (
        (L.TD_TEE_TCB_SVN, report.tee_tcb_svn, 16, "TEE_TCB_SVN"),
        (L.TD_MR_SEAM, report.mr_seam, 48, "MRSEAM"),
        (L.TD_MR_SIGNER_SEAM, report.mr_signer_seam, 48, "MRSIGNERSEAM"),
        (L.TD_SEAM_ATTRIBUTES, report.seam_attributes, 8, "SEAMATTRIBUTES"),
        (L.TD_TD_ATTRIBUTES, report.td_attributes, 8, "TDATTRIBUTES"),
        (L.TD_XFAM, report.xfam, 8, "XFAM"),
        (L.TD_MRTD, report.mrtd, 48, "MRTD"),
        (L.TD_MR_CONFIG_ID, report.mr_config_id, 48, "MRCONFIGID"),
        (L.TD_MR_OWNER, report.mr_owner, 48, "MROWNER"),
        (L.TD_MR_OWNER_CONFIG, report.mr_owner_config, 48, "MROWNERCONFIG"),
        (L.TD_RTMR0, report.rtmr0, 48, "RTMR0"),
        (L.TD_RTMR1, report.rtmr1, 48, "RTMR1"),
        (L.TD_RTMR2, report.rtmr2, 48, "RTMR2"),
        (L.TD_RTMR3, report.rtmr3, 48, "RTMR3"),
        (L.TD_REPORT_DATA, report.report_data, 64, "REPORTDATA"),
    )
    for offset, value, size, what in fields:
        _put(buf, offset, value, size, what)
    if report.tee_tcb_svn2 is not None and report.mr_servicetd is not None:
        _put(buf, L.TD_TEE_TCB_SVN2, report.tee_tcb_svn2, 16, "TEE_TCB_SVN2")
        _put(buf, L.TD_MR_SERVICETD, report.mr_servicetd, 48, "MRSERVICETD")
    return bytes(buf)


def _u16(value: int, what: str) -> bytes:
    if not 0 <= value < 1 << 16:
        raise ValueError(f"{what} {value} does not fit in 2 bytes")
    return value.to_bytes(2, "little")


def _u32(value: int, what: str) -> bytes:
    if not 0 <= value < 1 << 32:
        raise ValueError(f"{what} {value} does not fit in 4 bytes")
    return value.to_bytes(4, "little")


def _body_type(header: QuoteHeader, body: TdReport | EnclaveReport) -> int:
    """The body type ``parse_quote`` would report; refuses bodies the header cannot carry."""
    if header.version not in L.SUPPORTED_VERSIONS:
        raise ValueError(f"quote version must be 3, 4 or 5, got {header.version}")
    if isinstance(body, EnclaveReport):
        if header.tee_type != L.TEE_TYPE_SGX:
            raise ValueError("an SGX enclave report body needs TEE type SGX")
        return L.BODY_TYPE_SGX_ENCLAVE_REPORT
    if header.tee_type != L.TEE_TYPE_TDX:
        raise ValueError("a TD report body needs TEE type TDX")
    if body.is_td_report_15:
        if header.version != L.QUOTE_V5:
            raise ValueError("TD report 1.5 is carried by quote v5 only")
        return L.BODY_TYPE_TD_REPORT_15
    return L.BODY_TYPE_TD_REPORT_10


def encode_signed_data(header: QuoteHeader, body: TdReport | EnclaveReport) -> bytes:
    """header || body (v5: with the body descriptor): the bytes the attestation key signs."""
    body_type = _body_type(header, body)
    raw = encode_enclave_report(body) if isinstance(body, EnclaveReport) else encode_td_report(body)
    descriptor = b""
    if header.version == L.QUOTE_V5:
        descriptor = _u16(body_type, "body type") + _u32(len(raw), "body size")
    return encode_header(header) + descriptor + raw


def encode_certification_data(certification: CertificationData) -> bytes:
    """u16 type || u32 size || data."""
    return (
        _u16(certification.type, "certification data type")
        + _u32(len(certification.data), "certification data size")
        + certification.data
    )


def encode_signature_data(version: int, signature_data: QuoteSignatureData) -> bytes:
    """The quote's ECDSA-256 auth data (without its u32 length): the v3 layout, or for v4/v5
    the QE report part wrapped in type-6 certification data."""
    sig = signature_data
    if len(sig.signature) != L.ECDSA_SIGNATURE_SIZE:
        raise ValueError(f"quote signature must be {L.ECDSA_SIGNATURE_SIZE} bytes")
    if len(sig.attestation_key) != L.ECDSA_P256_KEY_SIZE:
        raise ValueError(f"attestation key must be {L.ECDSA_P256_KEY_SIZE} bytes")
    if len(sig.qe_report_signature) != L.ECDSA_SIGNATURE_SIZE:
        raise ValueError(f"QE report signature must be {L.ECDSA_SIGNATURE_SIZE} bytes")
    qe_part = (
        encode_enclave_report(sig.qe_report)
        + sig.qe_report_signature
        + _u16(len(sig.qe_auth_data), "QE authentication data size")
        + sig.qe_auth_data
        + encode_certification_data(sig.certification)
    )
    if version == L.QUOTE_V3:
        return sig.signature + sig.attestation_key + qe_part
    if version not in (L.QUOTE_V4, L.QUOTE_V5):
        raise ValueError(f"quote version must be 3, 4 or 5, got {version}")
    wrapper = CertificationData(type=L.CERT_QE_REPORT, data=qe_part)
    return sig.signature + sig.attestation_key + encode_certification_data(wrapper)


def encode_quote(
    header: QuoteHeader, body: TdReport | EnclaveReport, signature_data: QuoteSignatureData
) -> bytes:
    """A whole quote: signed data || u32 signature data length || signature data."""
    auth = encode_signature_data(header.version, signature_data)
    return encode_signed_data(header, body) + _u32(len(auth), "signature data length") + auth
