"""DCAP quote parser (v3 SGX, v4 SGX/TDX, v5 TDX 1.0/1.5).

Every read is bounds-checked before it happens, so any input either parses or raises
``QuoteFormatError`` with the offset and reason; parsing is linear in the input size.
"""

from __future__ import annotations

from typing import Final

from cllm.errors import QuoteFormatError
from cllm.quote import _layout as L
from cllm.quote._model import (
    CertificationData,
    EnclaveReport,
    Quote,
    QuoteHeader,
    QuoteSignatureData,
    TdReport,
)

__all__ = ["parse_enclave_report", "parse_quote"]

_BODY_SIZES: Final = {
    L.BODY_TYPE_SGX_ENCLAVE_REPORT: L.ENCLAVE_REPORT_SIZE,
    L.BODY_TYPE_TD_REPORT_10: L.TD_REPORT_10_SIZE,
    L.BODY_TYPE_TD_REPORT_15: L.TD_REPORT_15_SIZE,
}


class _Reader:
    """Sequential little-endian reader that fails with the absolute offset."""

    __slots__ = ("_data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self._data = data
        self.pos = pos

    def take(self, size: int, what: str) -> bytes:
        end = self.pos + size
        if end > len(self._data):
            raise QuoteFormatError(
                f"truncated {what}: needs {size} bytes, {len(self._data) - self.pos} left",
                offset=self.pos,
                code="quote_truncated",
            )
        chunk = self._data[self.pos : end]
        self.pos = end
        return chunk

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "little")

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "little")


def _le(data: bytes, offset: int, size: int) -> int:
    return int.from_bytes(data[offset : offset + size], "little")


def _parse_header(data: bytes) -> QuoteHeader:
    if len(data) < L.HEADER_SIZE:
        raise QuoteFormatError(
            f"truncated header: needs {L.HEADER_SIZE} bytes, {len(data)} given",
            offset=0,
            code="quote_truncated",
        )
    header = QuoteHeader(
        version=_le(data, L.HDR_VERSION, 2),
        attestation_key_type=_le(data, L.HDR_ATT_KEY_TYPE, 2),
        tee_type=_le(data, L.HDR_TEE_TYPE, 4),
        qe_svn=_le(data, L.HDR_QE_SVN, 2),
        pce_svn=_le(data, L.HDR_PCE_SVN, 2),
        qe_vendor_id=data[L.HDR_QE_VENDOR_ID : L.HDR_QE_VENDOR_ID + L.QE_VENDOR_ID_SIZE],
        user_data=data[L.HDR_USER_DATA : L.HDR_USER_DATA + L.USER_DATA_SIZE],
    )
    if header.version not in L.SUPPORTED_VERSIONS:
        raise QuoteFormatError(
            f"unsupported quote version {header.version} (supported: 3, 4, 5)",
            offset=L.HDR_VERSION,
            code="quote_unsupported_version",
        )
    if header.attestation_key_type != L.ATTESTATION_KEY_ECDSA_P256:
        raise QuoteFormatError(
            f"unsupported attestation key type {header.attestation_key_type} "
            "(only 2 = ECDSA-256-with-P-256 is defined)",
            offset=L.HDR_ATT_KEY_TYPE,
            code="quote_unsupported_key_type",
        )
    if header.tee_type not in (L.TEE_TYPE_SGX, L.TEE_TYPE_TDX):
        raise QuoteFormatError(
            f"unknown TEE type {header.tee_type:#x}",
            offset=L.HDR_TEE_TYPE,
            code="quote_unsupported_tee_type",
        )
    if header.version == L.QUOTE_V3 and header.tee_type != L.TEE_TYPE_SGX:
        raise QuoteFormatError(
            "quote v3 is SGX only", offset=L.HDR_TEE_TYPE, code="quote_unsupported_tee_type"
        )
    return header


def parse_enclave_report(raw: bytes) -> EnclaveReport:
    """Parse a 384-byte SGX REPORT body (the caller has checked the length)."""
    return EnclaveReport(
        cpu_svn=raw[L.ER_CPU_SVN : L.ER_CPU_SVN + 16],
        misc_select=_le(raw, L.ER_MISC_SELECT, 4),
        attributes=raw[L.ER_ATTRIBUTES : L.ER_ATTRIBUTES + 16],
        mr_enclave=raw[L.ER_MR_ENCLAVE : L.ER_MR_ENCLAVE + 32],
        mr_signer=raw[L.ER_MR_SIGNER : L.ER_MR_SIGNER + 32],
        isv_prod_id=_le(raw, L.ER_ISV_PROD_ID, 2),
        isv_svn=_le(raw, L.ER_ISV_SVN, 2),
        report_data=raw[L.ER_REPORT_DATA : L.ER_REPORT_DATA + 64],
        raw=raw,
    )


def _parse_td_report(raw: bytes) -> TdReport:
    def field(offset: int, size: int) -> bytes:
        return raw[offset : offset + size]

    is_15 = len(raw) == L.TD_REPORT_15_SIZE
    return TdReport(
        tee_tcb_svn=field(L.TD_TEE_TCB_SVN, 16),
        mr_seam=field(L.TD_MR_SEAM, 48),
        mr_signer_seam=field(L.TD_MR_SIGNER_SEAM, 48),
        seam_attributes=field(L.TD_SEAM_ATTRIBUTES, 8),
        td_attributes=field(L.TD_TD_ATTRIBUTES, 8),
        xfam=field(L.TD_XFAM, 8),
        mrtd=field(L.TD_MRTD, 48),
        mr_config_id=field(L.TD_MR_CONFIG_ID, 48),
        mr_owner=field(L.TD_MR_OWNER, 48),
        mr_owner_config=field(L.TD_MR_OWNER_CONFIG, 48),
        rtmr0=field(L.TD_RTMR0, 48),
        rtmr1=field(L.TD_RTMR1, 48),
        rtmr2=field(L.TD_RTMR2, 48),
        rtmr3=field(L.TD_RTMR3, 48),
        report_data=field(L.TD_REPORT_DATA, 64),
        tee_tcb_svn2=field(L.TD_TEE_TCB_SVN2, 16) if is_15 else None,
        mr_servicetd=field(L.TD_MR_SERVICETD, 48) if is_15 else None,
    )


def _body_type_and_size(header: QuoteHeader, reader: _Reader) -> tuple[int, int]:
    if header.version == L.QUOTE_V5:
        type_offset = reader.pos
        body_type = reader.u16("body type")
        body_size = reader.u32("body size")
        expected = _BODY_SIZES.get(body_type)
        if expected is None:
            raise QuoteFormatError(
                f"unsupported body type {body_type}",
                offset=type_offset,
                code="quote_unsupported_body_type",
            )
        if body_size != expected:
            raise QuoteFormatError(
                f"body size {body_size} does not match body type {body_type} ({expected})",
                offset=type_offset + 2,
            )
        is_sgx_body = body_type == L.BODY_TYPE_SGX_ENCLAVE_REPORT
        if is_sgx_body != (header.tee_type == L.TEE_TYPE_SGX):
            raise QuoteFormatError(
                f"body type {body_type} does not match TEE type {header.tee_type:#x}",
                offset=type_offset,
                code="quote_unsupported_body_type",
            )
        return body_type, body_size
    if header.tee_type == L.TEE_TYPE_TDX:
        return L.BODY_TYPE_TD_REPORT_10, L.TD_REPORT_10_SIZE
    return L.BODY_TYPE_SGX_ENCLAVE_REPORT, L.ENCLAVE_REPORT_SIZE


def _parse_certification_data(reader: _Reader) -> CertificationData:
    cert_type = reader.u16("certification data type")
    size = reader.u32("certification data size")
    return CertificationData(type=cert_type, data=reader.take(size, "certification data"))


def _parse_qe_report_part(
    reader: _Reader,
) -> tuple[EnclaveReport, bytes, bytes, CertificationData]:
    qe_report = parse_enclave_report(reader.take(L.ENCLAVE_REPORT_SIZE, "QE report"))
    qe_report_signature = reader.take(L.ECDSA_SIGNATURE_SIZE, "QE report signature")
    auth_size = reader.u16("QE authentication data size")
    qe_auth_data = reader.take(auth_size, "QE authentication data")
    certification = _parse_certification_data(reader)
    return qe_report, qe_report_signature, qe_auth_data, certification


def _parse_signature_data(version: int, data: bytes, start: int, end: int) -> QuoteSignatureData:
    """Parse the auth data occupying exactly ``data[start:end]``."""
    reader = _Reader(data[:end], start)
    signature = reader.take(L.ECDSA_SIGNATURE_SIZE, "quote signature")
    attestation_key = reader.take(L.ECDSA_P256_KEY_SIZE, "attestation key")
    if version == L.QUOTE_V3:
        qe_report, qe_sig, qe_auth, certification = _parse_qe_report_part(reader)
    else:
        wrapper_offset = reader.pos
        wrapper_type = reader.u16("certification data type")
        if wrapper_type != L.CERT_QE_REPORT:
            raise QuoteFormatError(
                f"certification data type {wrapper_type}: quote v{version} requires type 6 "
                "(QE report certification data)",
                offset=wrapper_offset,
                code="unsupported_certification_data",
            )
        wrapper_size = reader.u32("certification data size")
        wrapper_end = reader.pos + wrapper_size
        if wrapper_end != end:
            raise QuoteFormatError(
                f"QE report certification data size {wrapper_size} does not fill the "
                f"signature data ({end - reader.pos} bytes)",
                offset=wrapper_offset + 2,
            )
        qe_report, qe_sig, qe_auth, certification = _parse_qe_report_part(reader)
    if reader.pos != end:
        raise QuoteFormatError(
            f"{end - reader.pos} unparsed bytes inside the signature data",
            offset=reader.pos,
        )
    return QuoteSignatureData(
        signature=signature,
        attestation_key=attestation_key,
        qe_report=qe_report,
        qe_report_signature=qe_sig,
        qe_auth_data=qe_auth,
        certification=certification,
    )


def parse_quote(data: bytes) -> Quote:
    """Parse a DCAP quote. Bytes after the quote's declared end are counted, not parsed."""
    data = bytes(data)
    header = _parse_header(data)
    reader = _Reader(data, L.HEADER_SIZE)
    body_type, body_size = _body_type_and_size(header, reader)
    body_offset = reader.pos
    raw_body = reader.take(body_size, "quote body")
    body: TdReport | EnclaveReport
    if body_type == L.BODY_TYPE_SGX_ENCLAVE_REPORT:
        body = parse_enclave_report(raw_body)
    else:
        body = _parse_td_report(raw_body)
    signed_end = reader.pos
    sig_len = reader.u32("signature data length")
    sig_start = reader.pos
    sig_end = sig_start + sig_len
    if sig_end > len(data):
        raise QuoteFormatError(
            f"signature data length {sig_len} exceeds the {len(data) - sig_start} bytes left",
            offset=signed_end,
            code="quote_truncated",
        )
    signature_data = _parse_signature_data(header.version, data, sig_start, sig_end)
    return Quote(
        header=header,
        body_type=body_type,
        body=body,
        signature_data=signature_data,
        signed_data=data[:signed_end],
        body_offset=body_offset,
        signature_data_offset=sig_start,
        length=sig_end,
        trailing_bytes=len(data) - sig_end,
    )
