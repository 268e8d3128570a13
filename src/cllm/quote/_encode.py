"""Encoders for the fixed-size quote structures: the exact inverses of the parser.

Used to build quotes (the simulated TEE backend, tests). Every field is checked against its
size before it is written, because a short field would silently shift every later offset.
"""

from __future__ import annotations

from cllm.quote import _layout as L
from cllm.quote._model import EnclaveReport, QuoteHeader, TdReport

__all__ = ["encode_enclave_report", "encode_header", "encode_td_report"]


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
