"""The simulated DCAP world, verified by the real verifier; and the quote encoders it uses."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from cllm.errors import QuoteFormatError
from cllm.quote import (
    EnclaveReport,
    QuoteHeader,
    TdReport,
    encode_enclave_report,
    layout,
    parse_pck_extensions,
    parse_quote,
)
from cllm.quote import _parse as quote_parse
from cllm.quote._encode import encode_header, encode_td_report
from cllm.quote._parse import parse_enclave_report
from cllm.tee import SIMULATED_QE_VENDOR_ID, SIMULATED_ROOT_CA_NAME, SimulatedDcap
from cllm.tee._sim_dcap import (
    DEFAULT_TCB_LEVELS,
    CollateralParams,
    IsvSvnLevel,
    SimulatedPlatform,
    SimulatedQe,
    SimulatedTd,
    TdxModuleIdentityParams,
    _deterministic_ecdsa,
)
from cllm.verify import (
    Collateral,
    QuoteVerifier,
    TcbStatus,
    TdFacts,
    TrustRoot,
    VerificationResult,
    intel_root,
)
from cllm.verify._roots import INTEL_SGX_ROOT_CA_SHA256
from vectors import require_vectors

NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2027, 1, 1, tzinfo=UTC)
AT = datetime(2026, 1, 1, tzinfo=UTC)
SEED = b"cllm test seed"
REPORT_DATA = hashlib.sha512(b"binding").digest()
SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)


def _sim(platform: SimulatedPlatform | None = None, qe: SimulatedQe | None = None) -> SimulatedDcap:
    return SimulatedDcap.from_seed(
        SEED, not_before=NOT_BEFORE, not_after=NOT_AFTER, platform=platform, qe=qe
    )


@pytest.fixture(scope="module")
def sim() -> SimulatedDcap:
    return _sim()


@pytest.fixture(scope="module")
def verifier(sim: SimulatedDcap) -> QuoteVerifier:
    return QuoteVerifier(trust_root=sim.trust_root())


def _verify(
    sim: SimulatedDcap,
    *,
    quote: bytes | None = None,
    params: CollateralParams | None = None,
    at: datetime = AT,
    version: Literal[4, 5] = 4,
) -> VerificationResult:
    if quote is None:
        quote = sim.quote(report_data=REPORT_DATA, version=version)
    return QuoteVerifier(trust_root=sim.trust_root()).verify(quote, sim.collateral(params), at=at)


def _failure(result: VerificationResult) -> tuple[str, str | None]:
    assert not result.ok
    step = result.steps[-1]
    return step.name, step.code


# -- the happy path ------------------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 5])
def test_simulated_quote_verifies_up_to_date(
    sim: SimulatedDcap, verifier: QuoteVerifier, version: Literal[4, 5]
) -> None:
    quote = sim.quote(report_data=REPORT_DATA, version=version)
    result = verifier.verify(quote, sim.collateral(), at=AT)

    assert result.ok, result.error
    assert [step.ok for step in result.steps] == [True] * 15
    assert result.tcb_status is TcbStatus.UP_TO_DATE
    assert result.advisory_ids == ()
    assert result.trust_root == SIMULATED_ROOT_CA_NAME
    assert result.fmspc == sim.platform.fmspc.hex().upper()
    assert result.td == TdFacts(debug=False, sept_ve_disable=True, mr_servicetd_zero=True)
    parsed = parse_quote(quote)
    assert (parsed.length, parsed.trailing_bytes) == (len(quote), 0)
    assert parsed.td_report.report_data == REPORT_DATA
    expected_body = layout.BODY_TYPE_TD_REPORT_10 if version == 4 else layout.BODY_TYPE_TD_REPORT_15
    assert parsed.body_type == expected_body
    assert parsed.td_report.is_td_report_15 == (version == 5)


def test_quote_carries_the_td_fields(sim: SimulatedDcap) -> None:
    td = SimulatedTd(
        mrtd=b"\x01" * 48,
        rtmr0=b"\x02" * 48,
        rtmr3=b"\x03" * 48,
        mr_config_id=b"\x04" * 48,
        td_attributes=(1 | 1 << 28).to_bytes(8, "little"),
        mr_servicetd=b"\x05" * 48,
    )
    quote = sim.quote(report_data=REPORT_DATA, td=td, version=5)
    report = parse_quote(quote).td_report

    assert report == sim.td_report(report_data=REPORT_DATA, td=td, td_report_15=True)
    assert (report.mrtd, report.rtmr0, report.rtmr3) == (td.mrtd, td.rtmr0, td.rtmr3)
    assert report.mr_servicetd == td.mr_servicetd
    assert report.tee_tcb_svn == sim.platform.tee_tcb_svn
    # A debug TD still verifies: whether it is acceptable is policy's call.
    result = QuoteVerifier(trust_root=sim.trust_root()).verify(quote, sim.collateral(), at=AT)
    assert result.ok
    assert result.td == TdFacts(debug=True, sept_ve_disable=True, mr_servicetd_zero=False)


def test_pck_certificate_has_intels_sgx_extension(sim: SimulatedDcap) -> None:
    ext = parse_pck_extensions(sim.pck_certificate)
    platform = sim.platform
    assert ext.tcb_components == platform.sgx_tcb_components
    assert (ext.pce_svn, ext.cpu_svn) == (platform.pce_svn, platform.cpu_svn)
    assert (ext.fmspc, ext.pce_id, ext.sgx_type) == (platform.fmspc, b"\0\0", 0)
    assert (ext.dynamic_platform, ext.cached_keys, ext.smt_enabled) == (True, False, True)
    assert (len(ext.ppid), ext.platform_instance_id) == (16, None)


def test_sgx_extension_encodes_large_svns_and_instance_id() -> None:
    platform = SimulatedPlatform(
        sgx_tcb_components=(255, 128, 127, *range(13)),
        pce_svn=0x1234,
        sgx_type=1,
        platform_instance_id=b"\x42" * 16,
        dynamic_platform=False,
        cached_keys=True,
        smt_enabled=False,
    )
    ext = parse_pck_extensions(_sim(platform).pck_certificate)
    assert ext.tcb_components == platform.sgx_tcb_components
    assert (ext.pce_svn, ext.sgx_type, ext.platform_instance_id) == (0x1234, 1, b"\x42" * 16)
    assert (ext.dynamic_platform, ext.cached_keys, ext.smt_enabled) == (False, True, False)


def test_root_loaded_from_pem_file_verifies(sim: SimulatedDcap, tmp_path: Path) -> None:
    path = tmp_path / "sim-root.pem"
    path.write_bytes(sim.root_ca_pem())
    root = TrustRoot.from_pem_file(
        path, name=SIMULATED_ROOT_CA_NAME, qe_vendor_id=SIMULATED_QE_VENDOR_ID
    )
    result = QuoteVerifier(trust_root=root).verify(
        sim.quote(report_data=REPORT_DATA), sim.collateral(), at=AT
    )
    assert result.ok
    assert not root.is_intel_production


# -- it never passes as Intel --------------------------------------------------------------


def test_simulation_is_not_intel(sim: SimulatedDcap) -> None:
    root = sim.trust_root()
    assert root.sha256 != INTEL_SGX_ROOT_CA_SHA256
    assert root.certificate.public_key() != intel_root().certificate.public_key()
    assert not root.is_intel_production
    assert root.qe_vendor_id == SIMULATED_QE_VENDOR_ID != layout.INTEL_QE_VENDOR_ID
    subject_cn = root.certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert subject_cn[0].value == SIMULATED_ROOT_CA_NAME
    assert parse_quote(sim.quote(report_data=REPORT_DATA)).header.qe_vendor_id == (
        SIMULATED_QE_VENDOR_ID
    )


def test_intel_root_rejects_simulated_quote(sim: SimulatedDcap) -> None:
    result = QuoteVerifier(trust_root=intel_root()).verify(
        sim.quote(report_data=REPORT_DATA), sim.collateral(), at=AT
    )
    assert _failure(result) == ("pck_chain", "chain_untrusted")
    assert result.tcb_status is None


def test_vendor_id_check_holds_even_if_the_root_were_mislabelled(sim: SimulatedDcap) -> None:
    as_intel = dataclasses.replace(sim.trust_root(), qe_vendor_id=layout.INTEL_QE_VENDOR_ID)
    result = QuoteVerifier(trust_root=as_intel).verify(
        sim.quote(report_data=REPORT_DATA), sim.collateral(), at=AT
    )
    assert _failure(result) == ("qe_vendor", "qe_vendor_mismatch")


def test_independent_parser_reads_it_and_refuses_the_vendor(sim: SimulatedDcap) -> None:
    dcap_qvl = pytest.importorskip("dcap_qvl")
    quote = sim.quote(report_data=REPORT_DATA, version=5)
    parsed = dcap_qvl.parse_quote(quote)
    assert (parsed.header.version, parsed.header.qe_vendor_id) == (5, SIMULATED_QE_VENDOR_ID)
    assert parsed.report.report_data == REPORT_DATA
    assert (parsed.fmspc(), parsed.ca()) == (sim.platform.fmspc.hex().upper(), "platform")
    collateral = dcap_qvl.QuoteCollateralV3.from_json(json.dumps(sim.collateral().to_json_dict()))
    root_der = sim.root_certificate.public_bytes(Encoding.DER)
    with pytest.raises(ValueError, match="Unknown QE vendor ID"):
        dcap_qvl.verify_with_root_ca(quote, collateral, root_der, int(AT.timestamp()))


# -- TCB statuses --------------------------------------------------------------------------

_OLD_PLATFORM = SimulatedPlatform(
    sgx_tcb_components=DEFAULT_TCB_LEVELS[1].sgx_tcb_components,
    tee_tcb_svn=bytes(DEFAULT_TCB_LEVELS[1].tdx_tcb_components),
)


def _first_level(status: TcbStatus, *advisories: str) -> CollateralParams:
    first, *rest = DEFAULT_TCB_LEVELS
    level = dataclasses.replace(first, status=status, advisory_ids=advisories)
    return CollateralParams(tcb_levels=(level, *rest))


def test_out_of_date_platform() -> None:
    result = _verify(_sim(_OLD_PLATFORM))
    assert result.ok, result.error
    assert result.tcb_status is TcbStatus.OUT_OF_DATE
    assert result.platform_tcb_status is TcbStatus.OUT_OF_DATE
    assert result.tdx_module_tcb_status is TcbStatus.OUT_OF_DATE  # module SVN 2 in TDX_01
    assert result.advisory_ids == ("CLLM-SIM-SA-00001", "CLLM-SIM-SA-00002")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (_first_level(TcbStatus.SW_HARDENING_NEEDED, "SA-1"), TcbStatus.SW_HARDENING_NEEDED),
        (_first_level(TcbStatus.CONFIGURATION_NEEDED), TcbStatus.CONFIGURATION_NEEDED),
        (
            _first_level(TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED),
            TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
        ),
        (_first_level(TcbStatus.OUT_OF_DATE, "SA-2"), TcbStatus.OUT_OF_DATE),
    ],
)
def test_platform_level_status(
    sim: SimulatedDcap, params: CollateralParams, expected: TcbStatus
) -> None:
    result = _verify(sim, params=params)
    assert result.ok, result.error
    assert result.tcb_status is expected
    assert result.advisory_ids == params.tcb_levels[0].advisory_ids


def test_out_of_date_tdx_module() -> None:
    platform = SimulatedPlatform(tee_tcb_svn=bytes([2, 1, 7, *bytes(13)]))
    result = _verify(_sim(platform))
    assert result.ok, result.error
    assert result.platform_tcb_status is TcbStatus.UP_TO_DATE
    assert result.tdx_module_tcb_status is TcbStatus.OUT_OF_DATE
    assert result.tcb_status is TcbStatus.OUT_OF_DATE


def test_td_relaunch_advised_when_the_seam_is_already_updated() -> None:
    # TD report 1.5: the TD was built under module SVN 2, the SEAM now runs SVN 4.
    platform = SimulatedPlatform(
        tee_tcb_svn=bytes([2, 1, 7, *bytes(13)]), tee_tcb_svn2=bytes([4, 1, 7, *bytes(13)])
    )
    sim = _sim(platform)
    assert _verify(sim, version=5).tcb_status is TcbStatus.TD_RELAUNCH_ADVISED
    assert _verify(sim, version=4).tcb_status is TcbStatus.OUT_OF_DATE


def test_out_of_date_qe() -> None:
    result = _verify(_sim(qe=SimulatedQe(isv_svn=3)))
    assert result.ok, result.error
    assert result.qe_tcb_status is TcbStatus.OUT_OF_DATE
    assert result.tcb_status is TcbStatus.OUT_OF_DATE
    assert result.advisory_ids == ("CLLM-SIM-SA-00003",)


def test_revoked_tcb_level(sim: SimulatedDcap) -> None:
    result = _verify(sim, params=_first_level(TcbStatus.REVOKED))
    assert _failure(result) == ("tcb_status", "tcb_revoked")


@pytest.mark.parametrize(
    ("platform", "qe", "params", "failure"),
    [
        (
            SimulatedPlatform(sgx_tcb_components=(5,) * 16),
            None,
            None,
            ("tcb_level", "tcb_not_supported"),
        ),
        (
            SimulatedPlatform(tee_tcb_svn=bytes([4, 2, 7, *bytes(13)])),  # no TDX_02 identity
            None,
            None,
            ("tdx_module", "tdx_module_mismatch"),
        ),
        (
            None,
            None,
            CollateralParams(
                tdx_module_identities=(
                    TdxModuleIdentityParams("TDX_01", (IsvSvnLevel(5, TcbStatus.UP_TO_DATE),)),
                )
            ),
            ("tdx_module", "tcb_not_supported"),
        ),
        (None, SimulatedQe(isv_svn=1), None, ("qe_identity_tcb", "tcb_not_supported")),
        (
            None,
            None,
            CollateralParams(qe=SimulatedQe(isv_prod_id=1)),
            ("qe_identity_tcb", "qe_identity_mismatch"),
        ),
        (
            None,
            SimulatedQe(attributes=bytes.fromhex("1300000000000000e700000000000000")),  # DEBUG
            CollateralParams(qe=SimulatedQe()),
            ("qe_identity_tcb", "qe_identity_mismatch"),
        ),
        (
            None,
            None,
            CollateralParams(fmspc=bytes.fromhex("00806f050000")),
            ("platform_identity", "fmspc_mismatch"),
        ),
    ],
)
def test_tcb_mismatches(
    platform: SimulatedPlatform | None,
    qe: SimulatedQe | None,
    params: CollateralParams | None,
    failure: tuple[str, str],
) -> None:
    assert _failure(_verify(_sim(platform, qe), params=params)) == failure


# -- revocation and tampering ----------------------------------------------------------------


def test_revoked_pck_certificate(sim: SimulatedDcap) -> None:
    params = CollateralParams(revoked_pck_serials=(sim.pck_certificate.serial_number,))
    result = _verify(sim, params=params)
    assert _failure(result) == ("revocation", "certificate_revoked")


def test_revoked_pck_ca(sim: SimulatedDcap) -> None:
    params = CollateralParams(revoked_ca_serials=(sim.pck_ca_certificate.serial_number,))
    assert _failure(_verify(sim, params=params)) == ("revocation", "certificate_revoked")


def test_revoked_tcb_signing_certificate(sim: SimulatedDcap) -> None:
    params = CollateralParams(revoked_ca_serials=(sim.tcb_signing_certificate.serial_number,))
    assert _failure(_verify(sim, params=params)) == ("tcb_info", "certificate_revoked")


def test_unrelated_revocations_do_not_matter(sim: SimulatedDcap) -> None:
    params = CollateralParams(revoked_pck_serials=(1, 2, 3), revoked_ca_serials=(4,))
    assert _verify(sim, params=params).ok


def test_tampered_quote(sim: SimulatedDcap) -> None:
    quote = bytearray(sim.quote(report_data=REPORT_DATA))
    quote[layout.HEADER_SIZE + layout.TD_REPORT_DATA] ^= 1
    assert _failure(_verify(sim, quote=bytes(quote))) == (
        "quote_signature",
        "quote_signature_invalid",
    )


def test_tampered_tcb_info(sim: SimulatedDcap) -> None:
    collateral = sim.collateral()
    forged = collateral.tcb_info.replace(b'"OutOfDate"', b'"UpToDate"')
    assert forged != collateral.tcb_info
    result = QuoteVerifier(trust_root=sim.trust_root()).verify(
        sim.quote(report_data=REPORT_DATA),
        dataclasses.replace(collateral, tcb_info=forged),
        at=AT,
    )
    assert _failure(result) == ("tcb_info", "tcb_info_signature_invalid")


def test_collateral_of_another_simulation_is_rejected(sim: SimulatedDcap) -> None:
    other = SimulatedDcap.from_seed(b"other", not_before=NOT_BEFORE, not_after=NOT_AFTER)
    result = QuoteVerifier(trust_root=sim.trust_root()).verify(
        sim.quote(report_data=REPORT_DATA), other.collateral(), at=AT
    )
    assert _failure(result) == ("revocation", "crl_invalid")


def test_collateral_round_trips_through_json(sim: SimulatedDcap) -> None:
    collateral = sim.collateral()
    assert Collateral.from_json(json.dumps(collateral.to_json_dict())) == collateral


# -- validity windows ------------------------------------------------------------------------

_T0 = datetime(2026, 1, 1, tzinfo=UTC)
_T1 = datetime(2026, 2, 1, tzinfo=UTC)
# The windows of the items not under test are wider, so only the item under test decides.
_CERTS = CollateralParams(
    issue_date=NOT_BEFORE - DAY,
    next_update=NOT_AFTER + DAY,
    crl_this_update=NOT_BEFORE - DAY,
    crl_next_update=NOT_AFTER + DAY,
)
_DOCS = dataclasses.replace(_CERTS, issue_date=_T0, next_update=_T1)
_CRLS = dataclasses.replace(_CERTS, crl_this_update=_T0, crl_next_update=_T1)


@pytest.mark.parametrize(
    ("params", "at", "failure"),
    [
        # Certificates: valid from notBefore to notAfter, both inclusive.
        (_CERTS, NOT_BEFORE - SECOND, ("pck_chain", "not_yet_valid")),
        (_CERTS, NOT_BEFORE, None),
        (_CERTS, NOT_AFTER, None),
        (_CERTS, NOT_AFTER + SECOND, ("pck_chain", "expired")),
        # TCB info / QE identity: issueDate .. nextUpdate, both inclusive.
        (_DOCS, _T0 - SECOND, ("tcb_info", "not_yet_valid")),
        (_DOCS, _T0, None),
        (_DOCS, _T1, None),
        (_DOCS, _T1 + SECOND, ("tcb_info", "expired")),
        # CRLs: thisUpdate .. nextUpdate - 1 s (at nextUpdate a newer CRL is due).
        (_CRLS, _T0 - SECOND, ("revocation", "not_yet_valid")),
        (_CRLS, _T0, None),
        (_CRLS, _T1 - SECOND, None),
        (_CRLS, _T1, ("revocation", "expired")),
    ],
)
def test_validity_bounds(
    sim: SimulatedDcap,
    params: CollateralParams,
    at: datetime,
    failure: tuple[str, str] | None,
) -> None:
    result = _verify(sim, params=params, at=at)
    if failure is None:
        assert result.ok, result.error
    else:
        assert _failure(result) == failure


def test_collateral_expiry_is_the_earliest_end(sim: SimulatedDcap) -> None:
    result = _verify(sim, params=_CRLS, at=_T0)
    assert result.collateral_expires == int(_T1.timestamp()) - 1


def test_default_collateral_spans_the_certificates(sim: SimulatedDcap) -> None:
    assert _verify(sim, at=NOT_BEFORE).ok
    assert _verify(sim, at=NOT_AFTER - SECOND).ok
    assert _failure(_verify(sim, at=NOT_AFTER)) == ("revocation", "expired")


# -- determinism and argument checks ---------------------------------------------------------


def test_same_seed_same_world(sim: SimulatedDcap) -> None:
    again = _sim()
    assert again.root_certificate.public_key() == sim.root_certificate.public_key()
    if not _deterministic_ecdsa():
        pytest.skip("this OpenSSL has no RFC 6979 ECDSA: signatures differ between runs")
    assert again.root_ca_pem() == sim.root_ca_pem()
    assert again.pck_chain_pem() == sim.pck_chain_pem()
    assert again.collateral() == sim.collateral()
    assert again.quote(report_data=REPORT_DATA) == sim.quote(report_data=REPORT_DATA)
    other = SimulatedDcap.from_seed(b"other", not_before=NOT_BEFORE, not_after=NOT_AFTER)
    assert other.root_certificate.public_key() != sim.root_certificate.public_key()
    assert other.root_certificate.serial_number != sim.root_certificate.serial_number


def test_argument_checks(sim: SimulatedDcap) -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        sim.quote(report_data=bytes(32))
    with pytest.raises(ValueError, match="4 or 5"):
        sim.quote(report_data=REPORT_DATA, version=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulatedDcap.from_seed(SEED, not_before=datetime(2025, 1, 1), not_after=NOT_AFTER)
    with pytest.raises(ValueError, match="earlier"):
        SimulatedDcap.from_seed(SEED, not_before=NOT_AFTER, not_after=NOT_BEFORE)
    with pytest.raises(ValueError, match="whole second"):
        sim.collateral(CollateralParams(issue_date=AT.replace(microsecond=5)))


# -- encoders: exact inverses of the parser ---------------------------------------------------

_b = st.binary


def _td_reports(td_report_15: bool) -> st.SearchStrategy[TdReport]:
    b48 = _b(min_size=48, max_size=48)
    b8 = _b(min_size=8, max_size=8)
    b16 = _b(min_size=16, max_size=16)
    return st.builds(
        TdReport,
        tee_tcb_svn=b16,
        mr_seam=b48,
        mr_signer_seam=b48,
        seam_attributes=b8,
        td_attributes=b8,
        xfam=b8,
        mrtd=b48,
        mr_config_id=b48,
        mr_owner=b48,
        mr_owner_config=b48,
        rtmr0=b48,
        rtmr1=b48,
        rtmr2=b48,
        rtmr3=b48,
        report_data=_b(min_size=64, max_size=64),
        tee_tcb_svn2=b16 if td_report_15 else st.none(),
        mr_servicetd=b48 if td_report_15 else st.none(),
    )


@given(st.booleans().flatmap(_td_reports))
def test_td_report_round_trip(report: TdReport) -> None:
    raw = encode_td_report(report)
    assert len(raw) == (648 if report.is_td_report_15 else 584)
    assert quote_parse._parse_td_report(raw) == report


@given(_b(min_size=384, max_size=384))
def test_enclave_report_bytes_round_trip(raw: bytes) -> None:
    report = parse_enclave_report(raw)
    assert encode_enclave_report(report) == raw  # reserved bytes included
    assert parse_enclave_report(encode_enclave_report(report)) == report


@given(
    cpu_svn=_b(min_size=16, max_size=16),
    misc_select=st.integers(0, 2**32 - 1),
    attributes=_b(min_size=16, max_size=16),
    mr_enclave=_b(min_size=32, max_size=32),
    mr_signer=_b(min_size=32, max_size=32),
    isv_prod_id=st.integers(0, 0xFFFF),
    isv_svn=st.integers(0, 0xFFFF),
    report_data=_b(min_size=64, max_size=64),
)
def test_enclave_report_from_fields(
    cpu_svn: bytes,
    misc_select: int,
    attributes: bytes,
    mr_enclave: bytes,
    mr_signer: bytes,
    isv_prod_id: int,
    isv_svn: int,
    report_data: bytes,
) -> None:
    fields = EnclaveReport(
        cpu_svn, misc_select, attributes, mr_enclave, mr_signer, isv_prod_id, isv_svn,
        report_data, raw=b"",
    )  # fmt: skip
    raw = encode_enclave_report(fields)
    assert parse_enclave_report(raw) == dataclasses.replace(fields, raw=raw)


@given(
    version=st.sampled_from([4, 5]),
    qe_svn=st.integers(0, 0xFFFF),
    pce_svn=st.integers(0, 0xFFFF),
    qe_vendor_id=_b(min_size=16, max_size=16),
    user_data=_b(min_size=20, max_size=20),
)
def test_header_round_trip(
    version: int, qe_svn: int, pce_svn: int, qe_vendor_id: bytes, user_data: bytes
) -> None:
    header = QuoteHeader(version, 2, layout.TEE_TYPE_TDX, qe_svn, pce_svn, qe_vendor_id, user_data)
    raw = encode_header(header)
    assert len(raw) == 48
    assert quote_parse._parse_header(raw) == header


def test_encoders_reject_wrong_sizes(sim: SimulatedDcap) -> None:
    report = sim.td_report(report_data=REPORT_DATA)
    with pytest.raises(ValueError, match="MRTD must be 48 bytes"):
        encode_td_report(dataclasses.replace(report, mrtd=bytes(47)))
    with pytest.raises(ValueError, match="both"):
        encode_td_report(dataclasses.replace(report, tee_tcb_svn2=bytes(16)))
    header = parse_quote(sim.quote(report_data=REPORT_DATA)).header
    with pytest.raises(ValueError, match="does not fit"):
        encode_header(dataclasses.replace(header, version=0x10000))


def test_encoders_reproduce_real_quotes() -> None:
    checked = 0
    for path in sorted((require_vectors() / "quotes").glob("*.bin")):
        data = path.read_bytes()
        try:
            quote = parse_quote(data)
        except QuoteFormatError:
            continue  # the corpus lists its unparseable samples separately
        assert encode_header(quote.header) == data[: layout.HEADER_SIZE], path.name
        body = data[quote.body_offset : quote.signature_data_offset - 4]
        if isinstance(quote.body, TdReport):
            assert encode_td_report(quote.body) == body, path.name
        else:
            assert encode_enclave_report(quote.body) == body, path.name
        qe_report = quote.signature_data.qe_report
        assert encode_enclave_report(qe_report) == qe_report.raw, path.name
        checked += 1
    assert checked > 0
