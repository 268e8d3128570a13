"""Each quote-side encoder is its parser's inverse (hypothesis round trips).

Two directions: ``parse(encode(x)) == x`` for random valid structures, and
``encode(parse(b)) == b`` for every real quote (and PCK SGX extension) of the corpus, so the
encoders write exactly Intel's layout, not merely something our parser accepts.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any, Literal

import pytest
import samples
from hypothesis import given
from hypothesis import strategies as st

from cllm.quote import (
    CertificationData,
    EnclaveReport,
    PckExtensions,
    QuoteHeader,
    QuoteSignatureData,
    TdReport,
    encode_enclave_report,
    encode_quote,
    encode_sgx_extension,
    encode_signed_data,
    parse_pck_chain,
    parse_quote,
)
from cllm.quote import layout as L
from cllm.quote._encode import (
    encode_certification_data,
    encode_header,
    encode_signature_data,
    encode_td_report,
)
from cllm.quote._parse import parse_enclave_report
from cllm.quote._pck import SGX_EXTENSIONS_OID, parse_sgx_extension
from cllm.tee import SimulatedDcap
from fuzzing import budget
from vectors import cases_doc, params, read


def _b(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


def _uint(size: int) -> st.SearchStrategy[int]:
    return st.integers(0, (1 << (8 * size)) - 1)


@st.composite
def headers(draw: st.DrawFn, version: int, tee_type: int) -> QuoteHeader:
    return QuoteHeader(
        version=version,
        attestation_key_type=L.ATTESTATION_KEY_ECDSA_P256,
        tee_type=tee_type,
        qe_svn=draw(_uint(2)),
        pce_svn=draw(_uint(2)),
        qe_vendor_id=draw(_b(L.QE_VENDOR_ID_SIZE)),
        user_data=draw(_b(L.USER_DATA_SIZE)),
    )


@st.composite
def enclave_reports(draw: st.DrawFn) -> EnclaveReport:
    """Any fields over any reserved bytes; ``raw`` is what the parser will hand back."""
    report = EnclaveReport(
        cpu_svn=draw(_b(16)),
        misc_select=draw(_uint(4)),
        attributes=draw(_b(16)),
        mr_enclave=draw(_b(32)),
        mr_signer=draw(_b(32)),
        isv_prod_id=draw(_uint(2)),
        isv_svn=draw(_uint(2)),
        report_data=draw(_b(64)),
        raw=draw(st.one_of(st.just(b""), _b(L.ENCLAVE_REPORT_SIZE))),
    )
    return dataclasses.replace(report, raw=encode_enclave_report(report))


@st.composite
def td_reports(draw: st.DrawFn, *, td_report_15: bool) -> TdReport:
    return TdReport(
        tee_tcb_svn=draw(_b(16)),
        mr_seam=draw(_b(48)),
        mr_signer_seam=draw(_b(48)),
        seam_attributes=draw(_b(8)),
        td_attributes=draw(_b(8)),
        xfam=draw(_b(8)),
        mrtd=draw(_b(48)),
        mr_config_id=draw(_b(48)),
        mr_owner=draw(_b(48)),
        mr_owner_config=draw(_b(48)),
        rtmr0=draw(_b(48)),
        rtmr1=draw(_b(48)),
        rtmr2=draw(_b(48)),
        rtmr3=draw(_b(48)),
        report_data=draw(_b(64)),
        tee_tcb_svn2=draw(_b(16)) if td_report_15 else None,
        mr_servicetd=draw(_b(48)) if td_report_15 else None,
    )


@st.composite
def signature_datas(draw: st.DrawFn) -> QuoteSignatureData:
    return QuoteSignatureData(
        signature=draw(_b(L.ECDSA_SIGNATURE_SIZE)),
        attestation_key=draw(_b(L.ECDSA_P256_KEY_SIZE)),
        qe_report=draw(enclave_reports()),
        qe_report_signature=draw(_b(L.ECDSA_SIGNATURE_SIZE)),
        qe_auth_data=draw(st.binary(max_size=80)),
        certification=CertificationData(
            type=draw(st.sampled_from((1, 2, 3, 4, 5, 6, 7))),
            data=draw(st.binary(max_size=300)),
        ),
    )


@st.composite
def quote_parts(draw: st.DrawFn) -> tuple[QuoteHeader, TdReport | EnclaveReport, int]:
    """A header and a body it can carry, with the body type the parser will report."""
    kind = draw(st.sampled_from(("v3-sgx", "v4-sgx", "v4-tdx", "v5-sgx", "v5-td10", "v5-td15")))
    version = int(kind[1])
    body: TdReport | EnclaveReport
    if kind.endswith("sgx"):
        header = draw(headers(version, L.TEE_TYPE_SGX))
        body, body_type = draw(enclave_reports()), L.BODY_TYPE_SGX_ENCLAVE_REPORT
    else:
        header = draw(headers(version, L.TEE_TYPE_TDX))
        is_15 = kind == "v5-td15"
        body = draw(td_reports(td_report_15=is_15))
        body_type = L.BODY_TYPE_TD_REPORT_15 if is_15 else L.BODY_TYPE_TD_REPORT_10
    return header, body, body_type


# -- encode(random structure) parses back to the same structure ----------------------------


@budget(300)
@given(quote_parts(), signature_datas(), st.binary(max_size=8))
def test_random_quote_round_trips(
    parts: tuple[QuoteHeader, TdReport | EnclaveReport, int],
    signature_data: QuoteSignatureData,
    trailing: bytes,
) -> None:
    header, body, body_type = parts
    encoded = encode_quote(header, body, signature_data)
    quote = parse_quote(encoded + trailing)
    assert quote.header == header
    assert quote.body == body
    assert quote.body_type == body_type
    assert quote.signature_data == signature_data
    assert quote.signed_data == encode_signed_data(header, body)
    assert (quote.length, quote.trailing_bytes) == (len(encoded), len(trailing))
    auth = encode_signature_data(header.version, signature_data)
    assert encoded[quote.signature_data_offset :] == auth


@budget(200)
@given(enclave_reports())
def test_random_enclave_report_round_trips(report: EnclaveReport) -> None:
    assert parse_enclave_report(encode_enclave_report(report)) == report


@budget(200)
@given(st.integers(0, 0xFFFF), st.binary(max_size=200))
def test_certification_data_layout(cert_type: int, data: bytes) -> None:
    encoded = encode_certification_data(CertificationData(type=cert_type, data=data))
    assert encoded == cert_type.to_bytes(2, "little") + len(data).to_bytes(4, "little") + data


@st.composite
def pck_extensions(draw: st.DrawFn) -> PckExtensions:
    flag = st.one_of(st.none(), st.booleans())
    return PckExtensions(
        ppid=draw(_b(16)),
        tcb_components=tuple(draw(st.lists(st.integers(0, 255), min_size=16, max_size=16))),
        pce_svn=draw(_uint(2)),
        cpu_svn=draw(_b(16)),
        pce_id=draw(_b(2)),
        fmspc=draw(_b(6)),
        sgx_type=draw(st.integers(0, 2)),
        platform_instance_id=draw(st.one_of(st.none(), _b(16))),
        dynamic_platform=draw(flag),
        cached_keys=draw(flag),
        smt_enabled=draw(flag),
    )


@budget(300)
@given(pck_extensions())
def test_random_sgx_extension_round_trips(ext: PckExtensions) -> None:
    assert parse_sgx_extension(encode_sgx_extension(ext)) == ext


# -- the encoders refuse what the parser could not give back -------------------------------


def test_td_report_15_needs_quote_v5() -> None:
    header = parse_quote(samples.quote(4)).header
    body = parse_quote(samples.quote(5)).td_report
    with pytest.raises(ValueError, match="quote v5 only"):
        encode_signed_data(header, body)


def test_body_must_match_tee_type() -> None:
    sgx = parse_quote(samples.quote(4, tdx=False))
    tdx = parse_quote(samples.quote(4))
    with pytest.raises(ValueError, match="TEE type TDX"):
        encode_signed_data(sgx.header, tdx.body)
    with pytest.raises(ValueError, match="TEE type SGX"):
        encode_signed_data(tdx.header, sgx.body)


def test_short_fields_are_refused() -> None:
    quote = parse_quote(samples.quote(4))
    with pytest.raises(ValueError, match="QE vendor ID must be 16 bytes"):
        encode_header(dataclasses.replace(quote.header, qe_vendor_id=b"\0" * 15))
    with pytest.raises(ValueError, match="RTMR2 must be 48 bytes"):
        encode_td_report(dataclasses.replace(quote.td_report, rtmr2=b"\0" * 47))
    short_key = dataclasses.replace(quote.signature_data, attestation_key=b"\0" * 63)
    with pytest.raises(ValueError, match="attestation key must be 64 bytes"):
        encode_quote(quote.header, quote.body, short_key)
    ext = parse_sgx_extension(encode_sgx_extension(_sample_extension()))
    with pytest.raises(ValueError, match="FMSPC must be 6 bytes"):
        encode_sgx_extension(dataclasses.replace(ext, fmspc=b"\0" * 5))
    with pytest.raises(ValueError, match="16 SVNs"):
        encode_sgx_extension(dataclasses.replace(ext, tcb_components=(1,) * 15))


def _sample_extension() -> PckExtensions:
    return PckExtensions(
        ppid=bytes(16),
        tcb_components=tuple(range(16)),
        pce_svn=13,
        cpu_svn=bytes(range(16)),
        pce_id=bytes(2),
        fmspc=bytes.fromhex("00906ed50000"),
        sgx_type=0,
        platform_instance_id=None,
        dynamic_platform=None,
        cached_keys=None,
        smt_enabled=None,
    )


@pytest.mark.parametrize("raw", samples.every_kind().values(), ids=samples.every_kind().keys())
def test_built_samples_re_encode_byte_for_byte(raw: bytes) -> None:
    quote = parse_quote(raw)
    assert encode_quote(quote.header, quote.body, quote.signature_data) == raw


# -- parse(real corpus quote) re-encodes to the same bytes ---------------------------------


def _corpus() -> list[dict[str, Any]]:
    doc = cases_doc()
    return [*doc["cases"], *doc["parse_only"], *doc["unparseable_or_test_keys"]]


def _unique(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for entry in entries:
        seen.setdefault(entry["quote"], entry)
    return list(seen.values())


@pytest.mark.parametrize("entry", params(_unique(_corpus())))
def test_corpus_quote_re_encodes_byte_for_byte(entry: dict[str, Any]) -> None:
    raw = read(entry["quote"])
    quote = parse_quote(raw)
    assert encode_quote(quote.header, quote.body, quote.signature_data) == raw[: quote.length]
    assert encode_signed_data(quote.header, quote.body) == quote.signed_data


def _with_pck_chain() -> list[dict[str, Any]]:
    # The Intel QVL samples (``unparseable_or_test_keys``) carry no PEM PCK chain.
    doc = cases_doc()
    return _unique([*doc["cases"], *doc["parse_only"]])


@pytest.mark.parametrize("entry", params(_with_pck_chain()))
def test_corpus_sgx_extension_re_encodes_byte_for_byte(entry: dict[str, Any]) -> None:
    quote = parse_quote(read(entry["quote"]))
    leaf = parse_pck_chain(quote.signature_data.certification)[0]
    der = bytes(leaf.extensions.get_extension_for_oid(SGX_EXTENSIONS_OID).value.public_bytes())
    assert encode_sgx_extension(parse_sgx_extension(der)) == der


@pytest.mark.parametrize("version", [4, 5])
def test_simulated_quotes_re_encode_byte_for_byte(version: Literal[4, 5]) -> None:
    # The simulated DCAP world writes its quotes and PCK extension with these encoders; what it
    # signs is exactly what the parser hands the verifier.
    sim = SimulatedDcap(
        b"roundtrip",
        not_before=datetime(2025, 1, 1, tzinfo=UTC),
        not_after=datetime(2027, 1, 1, tzinfo=UTC),
    )
    raw = sim.quote(report_data=bytes(range(64)), version=version)
    quote = parse_quote(raw)
    assert encode_quote(quote.header, quote.body, quote.signature_data) == raw
    assert quote.td_report.is_td_report_15 == (version == 5)
    leaf = parse_pck_chain(quote.signature_data.certification)[0]
    der = bytes(leaf.extensions.get_extension_for_oid(SGX_EXTENSIONS_OID).value.public_bytes())
    assert encode_sgx_extension(parse_sgx_extension(der)) == der
