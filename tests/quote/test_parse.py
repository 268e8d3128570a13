"""Quote parser on quotes built here (no corpus needed): offsets, every structural error with
its code and offset."""

from __future__ import annotations

import struct

import pytest
import samples

from cllm.errors import QuoteFormatError
from cllm.quote import (
    EnclaveReport,
    TdReport,
    parse_pck_chain,
    parse_quote,
)
from cllm.quote import (
    layout as L,
)


def test_v4_td_report_fields_sit_at_spec_offsets() -> None:
    raw = samples.quote(4)
    quote = parse_quote(raw)
    body = quote.td_report
    base = L.HEADER_SIZE
    assert quote.body_offset == base
    assert body.tee_tcb_svn == raw[base + L.TD_TEE_TCB_SVN : base + L.TD_TEE_TCB_SVN + 16]
    assert body.mrtd == raw[base + L.TD_MRTD : base + L.TD_MRTD + 48]
    assert body.rtmr3 == raw[base + L.TD_RTMR3 : base + L.TD_RTMR3 + 48]
    assert body.report_data == raw[base + L.TD_REPORT_DATA : base + L.TD_REPORT_DATA + 64]
    assert body.tee_tcb_svn2 is None
    assert body.mr_servicetd is None
    assert body.mr_servicetd_zero
    assert quote.signed_data == raw[: base + L.TD_REPORT_10_SIZE]
    assert quote.header.qe_vendor_id == L.INTEL_QE_VENDOR_ID
    assert quote.header.qe_svn == 0x0A
    assert quote.header.pce_svn == 0x0F
    assert quote.signature_data.signature == samples.fill(64, 0x10)
    assert quote.signature_data.attestation_key == samples.fill(64, 0x20)
    assert quote.signature_data.qe_auth_data == samples.fill(32, 0)
    assert quote.signature_data.certification.type == L.CERT_PCK_CHAIN
    assert quote.length == len(raw)
    assert quote.trailing_bytes == 0


def test_v5_td_report_15_fields() -> None:
    raw = samples.quote(5)
    quote = parse_quote(raw)
    body = quote.td_report
    base = L.HEADER_SIZE + L.V5_BODY_DESCRIPTOR_SIZE
    assert quote.body_type == L.BODY_TYPE_TD_REPORT_15
    assert quote.body_offset == base
    assert body.tee_tcb_svn2 == raw[base + L.TD_TEE_TCB_SVN2 : base + L.TD_TEE_TCB_SVN2 + 16]
    assert body.mr_servicetd == raw[base + L.TD_MR_SERVICETD : base + L.TD_MR_SERVICETD + 48]
    assert not body.mr_servicetd_zero
    assert quote.signed_data == raw[: base + L.TD_REPORT_15_SIZE]


def test_v5_td_report_10_body() -> None:
    quote = parse_quote(samples.quote(5, body_type=L.BODY_TYPE_TD_REPORT_10))
    assert quote.body_type == L.BODY_TYPE_TD_REPORT_10
    assert quote.td_report.mr_servicetd is None


@pytest.mark.parametrize("version", [3, 4])
def test_sgx_enclave_report(version: int) -> None:
    raw = samples.quote(version, tdx=False)
    quote = parse_quote(raw)
    assert isinstance(quote.body, EnclaveReport)
    base = L.HEADER_SIZE
    assert quote.body.mr_enclave == raw[base + L.ER_MR_ENCLAVE : base + L.ER_MR_ENCLAVE + 32]
    assert quote.body.isv_prod_id == int.from_bytes(raw[base + 0x100 : base + 0x102], "little")
    assert quote.signature_data.qe_report.raw == samples.fill(L.ENCLAVE_REPORT_SIZE, 0x30)


def test_td_attribute_facts() -> None:
    raw = bytearray(samples.quote(4))
    offset = L.HEADER_SIZE + L.TD_TD_ATTRIBUTES
    raw[offset : offset + 8] = ((1 << 28) | 1).to_bytes(8, "little")
    body = parse_quote(bytes(raw)).td_report
    assert isinstance(body, TdReport)
    assert body.debug
    assert body.sept_ve_disable


def _error(raw: bytes) -> QuoteFormatError:
    with pytest.raises(QuoteFormatError) as raised:
        parse_quote(raw)
    return raised.value


def test_empty_input() -> None:
    error = _error(b"")
    assert (error.code, error.offset) == ("quote_truncated", 0)


@pytest.mark.parametrize("version", [0, 1, 2, 6, 0xFFFF])
def test_unsupported_version(version: int) -> None:
    raw = struct.pack("<H", version) + samples.quote(4)[2:]
    error = _error(raw)
    assert (error.code, error.offset) == ("quote_unsupported_version", L.HDR_VERSION)


def test_p384_key_type_is_unsupported() -> None:
    raw = samples.quote(4)
    raw = raw[:2] + struct.pack("<H", L.ATTESTATION_KEY_ECDSA_P384) + raw[4:]
    error = _error(raw)
    assert (error.code, error.offset) == ("quote_unsupported_key_type", L.HDR_ATT_KEY_TYPE)


def test_unknown_tee_type() -> None:
    raw = samples.quote(4)
    error = _error(raw[:4] + struct.pack("<I", 0x80) + raw[8:])
    assert (error.code, error.offset) == ("quote_unsupported_tee_type", L.HDR_TEE_TYPE)


def test_v3_must_be_sgx() -> None:
    raw = samples.quote(3, tdx=False)
    error = _error(raw[:4] + struct.pack("<I", L.TEE_TYPE_TDX) + raw[8:])
    assert error.code == "quote_unsupported_tee_type"


def test_v5_unknown_body_type() -> None:
    raw = samples.quote(5)
    error = _error(raw[:48] + struct.pack("<H", 4) + raw[50:])
    assert (error.code, error.offset) == ("quote_unsupported_body_type", 48)


def test_v5_body_size_must_match_type() -> None:
    raw = samples.quote(5)
    error = _error(raw[:50] + struct.pack("<I", L.TD_REPORT_10_SIZE) + raw[54:])
    assert (error.code, error.offset) == ("quote_format", 50)


def test_v5_sgx_body_in_tdx_quote() -> None:
    raw = samples.quote(5, tdx=False)
    error = _error(raw[:4] + struct.pack("<I", L.TEE_TYPE_TDX) + raw[8:])
    assert error.code == "quote_unsupported_body_type"


def test_signature_data_length_beyond_input() -> None:
    raw = samples.quote(4)
    at = L.HEADER_SIZE + L.TD_REPORT_10_SIZE
    declared = int.from_bytes(raw[at : at + 4], "little")
    error = _error(raw[:at] + struct.pack("<I", declared + 1) + raw[at + 4 :])
    assert (error.code, error.offset) == ("quote_truncated", at)


def test_signature_data_length_short_of_content() -> None:
    raw = samples.quote(4)
    at = L.HEADER_SIZE + L.TD_REPORT_10_SIZE
    declared = int.from_bytes(raw[at : at + 4], "little")
    error = _error(raw[:at] + struct.pack("<I", declared - 1) + raw[at + 4 :])
    assert error.code in {"quote_format", "quote_truncated"}


def test_v4_requires_qe_report_certification_wrapper() -> None:
    raw = bytearray(samples.quote(4))
    at = L.HEADER_SIZE + L.TD_REPORT_10_SIZE + 4 + 128
    raw[at : at + 2] = struct.pack("<H", L.CERT_PCK_CHAIN)
    error = _error(bytes(raw))
    assert (error.code, error.offset) == ("unsupported_certification_data", at)


def test_unparsed_bytes_inside_signature_data() -> None:
    raw = samples.quote(3, tdx=False) + b"\0\0"
    at = L.HEADER_SIZE + L.ENCLAVE_REPORT_SIZE
    declared = int.from_bytes(raw[at : at + 4], "little")
    error = _error(raw[:at] + struct.pack("<I", declared + 2) + raw[at + 4 :])
    assert error.code == "quote_format"
    assert error.offset == len(raw) - 2


def test_trailing_bytes_are_counted() -> None:
    raw = samples.quote(4)
    quote = parse_quote(raw + b"\0" * 100)
    assert quote.length == len(raw)
    assert quote.trailing_bytes == 100


def test_non_chain_certification_data_is_a_clear_error() -> None:
    raw = samples.quote(3, tdx=False)
    quote = parse_quote(raw)
    from cllm.quote import CertificationData

    with pytest.raises(QuoteFormatError) as raised:
        parse_pck_chain(CertificationData(type=L.CERT_PPID_CLEARTEXT, data=b"x" * 16))
    assert raised.value.code == "unsupported_certification_data"
    with pytest.raises(QuoteFormatError) as raised:
        parse_pck_chain(quote.signature_data.certification)  # PEM framing, bogus content
    assert raised.value.code == "pck_chain_malformed"
