"""Tamper tests on real quotes: every single-bit flip in every signed region is rejected with
the code of the check that protects that region; truncation always fails to parse; bytes after
the quote are ignored (as Intel QVL and dcap-qvl do) and counted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cllm.errors import QuoteFormatError
from cllm.quote import layout, parse_quote
from cllm.verify import Collateral, QuoteVerifier, VerificationResult, intel_root, load_collateral
from vectors import case, read, require_vectors

GOOD_CASES = {
    "gotdxguest-cos113@20250604": 4,  # TDX v4, UpToDate
    "gotdxguest-v5-sample@20260218": 5,  # TDX v5 (TD report 1.5), UpToDate
    "dcapqvl-sgx-quote@20250619": 3,  # SGX v3, ConfigurationAndSWHardeningNeeded
}
REGIONS = [
    "version",
    "key_type",
    "tee_type",
    "header_rest",
    "body",
    "quote_signature",
    "attestation_key",
    "qe_report",
    "qe_report_signature",
    "qe_auth_data",
    "body_descriptor",  # v5 only
]
FLIP_PARAMS = [
    pytest.param(case_id, region, id=f"{case_id}-{region}")
    for case_id, version in GOOD_CASES.items()
    for region in REGIONS
    if region != "body_descriptor" or version == 5
]


@pytest.fixture(scope="module")
def verifier() -> QuoteVerifier:
    return QuoteVerifier(trust_root=intel_root())


def _load(case_id: str) -> tuple[bytes, Collateral, int]:
    require_vectors()
    entry: dict[str, Any] = case(case_id)
    collateral = load_collateral(require_vectors() / entry["collateral"])
    return read(entry["quote"]), collateral, entry["at"]


@pytest.fixture(scope="module", params=list(GOOD_CASES))
def good(request: pytest.FixtureRequest) -> tuple[bytes, Collateral, int]:
    return _load(request.param)


def _regions(quote: bytes) -> dict[str, tuple[range, set[str]]]:
    """Byte ranges of the signed regions and the codes a flip there may produce."""
    parsed = parse_quote(quote)
    sig = parsed.signature_data_offset
    qe_report = sig + 128 + (0 if parsed.version == 3 else 6)
    qe_sig = qe_report + layout.ENCLAVE_REPORT_SIZE
    auth = qe_sig + 64 + 2
    format_or_signature = {"quote_unsupported_version", "quote_truncated", "quote_format"}
    regions = {
        "version": (range(0, 2), format_or_signature | {"quote_unsupported_body_type"}),
        "key_type": (range(2, 4), {"quote_unsupported_key_type"}),
        "tee_type": (range(4, 8), {"quote_unsupported_tee_type"}),
        "header_rest": (range(8, 48), {"quote_signature_invalid"}),
        "body": (range(parsed.body_offset, sig - 4), {"quote_signature_invalid"}),
        "quote_signature": (range(sig, sig + 64), {"quote_signature_invalid"}),
        "attestation_key": (range(sig + 64, sig + 128), {"qe_report_data_mismatch"}),
        "qe_report": (range(qe_report, qe_sig), {"qe_report_signature_invalid"}),
        "qe_report_signature": (range(qe_sig, qe_sig + 64), {"qe_report_signature_invalid"}),
        "qe_auth_data": (
            range(auth, auth + len(parsed.signature_data.qe_auth_data)),
            {"qe_report_data_mismatch"},
        ),
    }
    if parsed.version == 5:
        regions["body_descriptor"] = (
            range(48, 54),
            {"quote_unsupported_body_type", "quote_format", "quote_truncated"},
        )
    return regions


def _flips(data: bytes, offsets: range) -> Iterator[tuple[int, int, bytes]]:
    for offset in offsets:
        for bit in range(8):
            mutated = bytearray(data)
            mutated[offset] ^= 1 << bit
            yield offset, bit, bytes(mutated)


def _verdict(result: VerificationResult) -> str:
    return "ok" if result.ok else (result.error.code if result.error else "?")


@pytest.mark.parametrize(("case_id", "region"), FLIP_PARAMS)
def test_every_bit_flip_is_rejected_with_its_code(
    verifier: QuoteVerifier, case_id: str, region: str
) -> None:
    quote, collateral, at = _load(case_id)
    assert verifier.verify(quote, collateral, at=at).ok
    offsets, allowed = _regions(quote)[region]
    wrong = []
    for offset, bit, mutated in _flips(quote, offsets):
        verdict = _verdict(verifier.verify(mutated, collateral, at=at))
        if verdict not in allowed:
            wrong.append((offset, bit, verdict))
    assert not wrong, f"{len(wrong)} flips gave an unexpected verdict, first: {wrong[:5]}"


def test_every_truncation_fails_to_parse(good: tuple[bytes, Collateral, int]) -> None:
    quote = good[0]
    for length in range(len(quote)):
        with pytest.raises(QuoteFormatError):
            parse_quote(quote[:length])


def test_truncated_by_one_byte_is_rejected_as_unusable(
    verifier: QuoteVerifier, good: tuple[bytes, Collateral, int]
) -> None:
    quote, collateral, at = good
    result = verifier.verify(quote[:-1], collateral, at=at)
    assert not result.ok
    assert result.input_unusable
    assert result.error is not None and result.error.code == "quote_truncated"


@pytest.mark.parametrize("padding", [b"\0", b"\0" * 1064, b"\xff" * 3])
def test_trailing_bytes_are_ignored_and_counted(
    verifier: QuoteVerifier, good: tuple[bytes, Collateral, int], padding: bytes
) -> None:
    quote, collateral, at = good
    result = verifier.verify(quote + padding, collateral, at=at)
    assert result.ok
    assert result.quote is not None
    assert result.quote.trailing_bytes == len(padding)
    assert result.quote.length == len(quote)


def test_tcb_info_text_change_breaks_its_signature(
    verifier: QuoteVerifier, good: tuple[bytes, Collateral, int]
) -> None:
    quote, collateral, at = good
    text = collateral.tcb_info
    # Change one digit of the evaluation data number: still valid JSON, no longer Intel's bytes.
    marker = b'"tcbEvaluationDataNumber":'
    pos = text.index(marker) + len(marker)
    digit = text[pos : pos + 1]
    changed = text[:pos] + (b"9" if digit != b"9" else b"8") + text[pos + 1 :]
    result = verifier.verify(quote, _replace(collateral, tcb_info=changed), at=at)
    assert result.error is not None and result.error.code == "tcb_info_signature_invalid"


@pytest.mark.parametrize("field", ["tcb_info_signature", "qe_identity_signature"])
def test_collateral_signature_bit_flips_are_rejected(
    verifier: QuoteVerifier, good: tuple[bytes, Collateral, int], field: str
) -> None:
    quote, collateral, at = good
    signature: bytes = getattr(collateral, field)
    for offset in range(0, len(signature), 7):
        mutated = bytearray(signature)
        mutated[offset] ^= 0x10
        result = verifier.verify(quote, _replace(collateral, **{field: bytes(mutated)}), at=at)
        assert result.error is not None and result.error.code == f"{field}_invalid"


def _replace(collateral: Collateral, **changes: bytes) -> Collateral:
    from dataclasses import replace

    return replace(collateral, **changes)
