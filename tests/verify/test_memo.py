"""What the quote verifier remembers between quotes, and that remembering never lets a changed
byte through: QE report signatures are memoised on their exact (key, signature, report) bytes,
attestation keys on their exact bytes, and the quote's own signature is checked every time."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from cllm.quote import layout, parse_quote
from cllm.tee import SimulatedDcap
from cllm.verify import QuoteVerifier, VerificationResult
from cllm.verify._pki import SignatureMemo, p256_point

NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2027, 1, 1, tzinfo=UTC)
AT = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> SimulatedDcap:
    return SimulatedDcap.from_seed(b"memo test", not_before=NOT_BEFORE, not_after=NOT_AFTER)


def _quote(sim: SimulatedDcap, tag: bytes) -> bytes:
    return sim.quote(report_data=hashlib.sha512(tag).digest())


def _qe_report_signature_range(quote: bytes) -> range:
    parsed = parse_quote(quote)
    start = parsed.signature_data_offset + 128 + 6 + layout.ENCLAVE_REPORT_SIZE
    assert quote[start : start + 64] == parsed.signature_data.qe_report_signature
    return range(start, start + 64)


def _flip(data: bytes, offset: int, bit: int = 0) -> bytes:
    mutated = bytearray(data)
    mutated[offset] ^= 1 << bit
    return bytes(mutated)


def _failure(result: VerificationResult) -> tuple[str, str | None]:
    assert not result.ok
    step = result.steps[-1]
    return step.name, step.code


def test_tampered_qe_report_signature_is_rejected_after_the_genuine_one_was_memoised(
    sim: SimulatedDcap,
) -> None:
    verifier = QuoteVerifier(trust_root=sim.trust_root())
    collateral = sim.collateral()
    good = _quote(sim, b"first")
    assert verifier.verify(good, collateral, at=AT).ok  # the QE report signature is memoised
    assert len(verifier._qe_report_signatures) == 1
    for offset in _qe_report_signature_range(good)[::7]:
        for bit in (0, 7):
            result = verifier.verify(_flip(good, offset, bit), collateral, at=AT)
            assert _failure(result) == ("qe_report_signature", "qe_report_signature_invalid")
    # Failures are not remembered, and the genuine quote still verifies.
    assert len(verifier._qe_report_signatures) == 1
    assert verifier.verify(good, collateral, at=AT).ok


def test_tampered_qe_report_is_rejected_after_the_genuine_one_was_memoised(
    sim: SimulatedDcap,
) -> None:
    verifier = QuoteVerifier(trust_root=sim.trust_root())
    collateral = sim.collateral()
    good = _quote(sim, b"first")
    assert verifier.verify(good, collateral, at=AT).ok
    report_start = _qe_report_signature_range(good).start - layout.ENCLAVE_REPORT_SIZE
    # ISV SVN and report data of the QE report: signed by the PCK key, so any change fails.
    for offset in (report_start + 256, report_start + 320, report_start + 383):
        result = verifier.verify(_flip(good, offset), collateral, at=AT)
        assert _failure(result) == ("qe_report_signature", "qe_report_signature_invalid")


def test_every_quote_signature_is_checked_although_the_qe_report_is_memoised(
    sim: SimulatedDcap,
) -> None:
    verifier = QuoteVerifier(trust_root=sim.trust_root())
    collateral = sim.collateral()
    first, second = _quote(sim, b"first"), _quote(sim, b"second")
    assert verifier.verify(first, collateral, at=AT).ok
    assert verifier.verify(second, collateral, at=AT).ok  # same platform: memo hit
    assert len(verifier._qe_report_signatures) == 1
    parsed = parse_quote(second)
    for offset in (layout.HEADER_SIZE + layout.TD_REPORT_DATA, parsed.signature_data_offset + 3):
        result = verifier.verify(_flip(second, offset), collateral, at=AT)
        assert _failure(result) == ("quote_signature", "quote_signature_invalid")
    # A quote of another platform (other PCK key) verifies its QE report afresh.
    other = SimulatedDcap.from_seed(b"other platform", not_before=NOT_BEFORE, not_after=NOT_AFTER)
    other_verifier = QuoteVerifier(trust_root=other.trust_root())
    assert other_verifier.verify(_quote(other, b"x"), other.collateral(), at=AT).ok


def _signed(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def test_signature_memo_checks_exact_bytes_and_is_bounded() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    point = p256_point(public)
    memo = SignatureMemo(maxsize=2)
    messages = [b"report %d" % i for i in range(3)]
    signatures = [_signed(key, m) for m in messages]
    assert memo.verify(public, point, signatures[0], messages[0])
    # Same message, a signature off by one bit; same signature, another message: both fail,
    # and failures are not stored.
    assert not memo.verify(public, point, _flip(signatures[0], 40), messages[0])
    assert not memo.verify(public, point, signatures[0], messages[1])
    assert len(memo) == 1
    # Another key with the same signature and message: verified against that key, and fails.
    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert not memo.verify(stranger, p256_point(stranger), signatures[0], messages[0])
    # At most maxsize entries, least recently used out first.
    assert memo.verify(public, point, signatures[1], messages[1])
    assert memo.verify(public, point, signatures[0], messages[0])  # 0 is now the most recent
    assert memo.verify(public, point, signatures[2], messages[2])
    assert len(memo) == 2
    assert (point, signatures[1], messages[1]) not in memo._verified
    with pytest.raises(ValueError, match="maxsize"):
        SignatureMemo(maxsize=0)


def test_attestation_key_cache_is_bounded(sim: SimulatedDcap) -> None:
    verifier = QuoteVerifier(trust_root=sim.trust_root(), cache_size=4)
    collateral = sim.collateral()
    for index in range(6):
        assert verifier.verify(_quote(sim, b"%d" % index), collateral, at=AT).ok
    assert verifier._attestation_key.cache_info().maxsize == 4
    assert verifier._attestation_key.cache_info().currsize == 1  # one QE, one attestation key
