"""Every case of the real-hardware corpus: verdict, TCB status, advisories and policy facts at
the suggested time and both window edges, and rejection one second outside the window."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from cllm.errors import QuoteFormatError
from cllm.quote import TdReport, parse_pck_chain, parse_pck_extensions, parse_quote
from cllm.verify import Collateral, QuoteVerifier, intel_root, load_collateral
from vectors import case, cases, cases_doc, params, read, require_vectors

# Codes of the chain / CRL / signature steps: what a case with broken crypto must fail with.
CRYPTO_CODES = {
    "chain_untrusted",
    "crl_invalid",
    "certificate_revoked",
    "tcb_info_signature_invalid",
    "qe_identity_signature_invalid",
    "qe_report_signature_invalid",
    "qe_report_data_mismatch",
    "quote_signature_invalid",
}


@pytest.fixture(scope="module")
def verifier() -> QuoteVerifier:
    return QuoteVerifier(trust_root=intel_root())


_collateral_cache: dict[str, Collateral] = {}


def _collateral(entry: dict[str, Any]) -> Collateral:
    path = entry["collateral"]
    if path not in _collateral_cache:
        _collateral_cache[path] = load_collateral(require_vectors() / path)
    return _collateral_cache[path]


def test_corpus_integrity() -> None:
    root = require_vectors()
    done = subprocess.run(
        [sys.executable, "check_corpus.py"], cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_corpus_has_every_kind() -> None:
    require_vectors()
    kinds = {entry["kind"] for entry in cases()}
    assert kinds == {"tdx-v4", "tdx-v5", "sgx-v3"}
    assert len(cases()) >= 238


@pytest.mark.parametrize("entry", params(cases()))
@pytest.mark.parametrize("when", ["at", "not_before", "not_after"])
def test_verdict_inside_window(verifier: QuoteVerifier, entry: dict[str, Any], when: str) -> None:
    at = entry["at"] if when == "at" else entry["window"][when]
    result = verifier.verify(read(entry["quote"]), _collateral(entry), at=at)
    expect = entry["expect"]
    if not expect["signature_and_chain_valid"]:
        assert not result.ok
        assert result.error is not None and result.error.code in CRYPTO_CODES
    elif expect["error_category"] is not None:
        assert not result.ok
        assert result.error is not None and result.error.code == expect["error_category"]
    else:
        assert result.ok, result.error
        assert result.tcb_status == expect["tcb_status"]
        assert set(result.advisory_ids) == set(expect["advisory_ids"])
        assert result.collateral_expires == entry["window"]["not_after"]
    if "td" in entry and result.td is not None:
        assert result.td.debug == entry["td"]["debug"]
        assert result.td.sept_ve_disable == entry["td"]["sept_ve_disable"]
        assert result.td.mr_servicetd_zero == entry["td"]["mr_servicetd_zero"]
    if "enclave" in entry and result.enclave_debug is not None:
        assert result.enclave_debug == entry["enclave"]["debug"]


@pytest.mark.parametrize("entry", params(cases()))
def test_rejected_one_second_outside_window(verifier: QuoteVerifier, entry: dict[str, Any]) -> None:
    quote, collateral = read(entry["quote"]), _collateral(entry)
    window = entry["window"]
    early = verifier.verify(quote, collateral, at=window["not_before"] - 1)
    late = verifier.verify(quote, collateral, at=window["not_after"] + 1)
    assert not early.ok
    assert not late.ok
    assert early.error is not None and late.error is not None
    expect = entry["expect"]
    if expect["error_category"] == "unsupported_collateral_format":
        # The TCB info cannot be decoded, so no date is ever reached.
        assert early.error.code == late.error.code == "unsupported_collateral_format"
    elif expect["signature_and_chain_valid"]:
        assert early.error.code == "not_yet_valid"
        assert late.error.code == "expired"


def _unique_quotes() -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for entry in cases():
        seen.setdefault(entry["quote"], entry)
    return list(seen.values())


@pytest.mark.parametrize("entry", params(_unique_quotes()))
def test_parsed_fields_match_report(entry: dict[str, Any]) -> None:
    quote = parse_quote(read(entry["quote"]))
    report = entry["report"]
    assert quote.version == report["version"]
    assert quote.header.tee_type == report["tee_type"]
    if "body_type" in report:
        assert quote.body_type == report["body_type"]
    for name, expected in report.items():
        if name in ("version", "tee_type", "body_type"):
            continue
        value = getattr(quote.body, name)
        assert (value.hex() if isinstance(value, bytes) else value) == expected, name
    assert isinstance(quote.body, TdReport) == entry["kind"].startswith("tdx")
    assert quote.trailing_bytes == 0
    chain = parse_pck_chain(quote.signature_data.certification)
    assert parse_pck_extensions(chain[0]).fmspc.hex().upper() == entry["fmspc"]


@pytest.mark.parametrize("entry", params(cases_doc()["parse_only"]))
def test_parse_only_quotes_parse(entry: dict[str, Any]) -> None:
    quote = parse_quote(read(entry["quote"]))
    chain = parse_pck_chain(quote.signature_data.certification)
    assert len(parse_pck_extensions(chain[0]).fmspc) == 6


def test_preproduction_quote_fails_at_pck_chain(verifier: QuoteVerifier) -> None:
    require_vectors()
    entry = next(e for e in cases_doc()["parse_only"] if e["id"] == "cctrustedapi-preprod-tdx")
    collateral = _collateral(case("gotdxguest-cos113@20250604"))
    result = verifier.verify(
        read(entry["quote"]), collateral, at=case("gotdxguest-cos113@20250604")["at"]
    )
    assert not result.ok
    assert result.steps[-1].name == "pck_chain"
    assert result.error is not None and result.error.code == "chain_untrusted"


@pytest.mark.parametrize("entry", params(cases_doc()["unparseable_or_test_keys"]))
def test_intel_samples_fail_typed_at_certification_data(
    verifier: QuoteVerifier, entry: dict[str, Any]
) -> None:
    quote = parse_quote(read(entry["quote"]))
    with pytest.raises(QuoteFormatError) as raised:
        parse_pck_chain(quote.signature_data.certification)
    assert raised.value.code in {"unsupported_certification_data", "pck_chain_malformed"}
    good = case("gotdxguest-cos113@20250604")
    result = verifier.verify(read(entry["quote"]), _collateral(good), at=good["at"])
    assert not result.ok
    assert result.steps[-1].name == "pck_chain"
    assert result.input_unusable
