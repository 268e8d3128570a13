"""Certificate chains as the attacker builds them: collateral signed by anything but the pinned
TCB Signing certificate, chain bombs of 3 to 8 certificates, CRL chains of another CA. Each is
rejected with its exact code, by shape, without path building."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

import hostile_chains as hc
from cllm.errors import CllmError
from cllm.tee import SimulatedDcap
from cllm.verify import (
    INTEL_TCB_SIGNING_KEY,
    INTEL_TCB_SIGNING_SUBJECT,
    Collateral,
    QuoteVerifier,
    TrustRoot,
    VerificationResult,
    intel_root,
    load_collateral,
)
from cllm.verify._pki import MAX_CHAIN_PEM_BYTES
from vectors import case, read, require_vectors

NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2027, 1, 1, tzinfo=UTC)
AT = datetime(2026, 1, 1, tzinfo=UTC)
REPORT_DATA = hashlib.sha512(b"chains").digest()


@pytest.fixture(scope="module")
def sim() -> SimulatedDcap:
    return SimulatedDcap.from_seed(b"chain tests", not_before=NOT_BEFORE, not_after=NOT_AFTER)


def _verify(sim: SimulatedDcap, quote: bytes, collateral: Collateral) -> VerificationResult:
    return QuoteVerifier(trust_root=sim.trust_root()).verify(quote, collateral, at=AT)


def _failure(result: VerificationResult) -> tuple[str, str | None]:
    assert not result.ok
    step = result.steps[-1]
    return step.name, step.code


def test_genuine_simulated_quote_verifies(sim: SimulatedDcap) -> None:
    assert _verify(sim, sim.quote(report_data=REPORT_DATA), sim.collateral()).ok


# -- the collateral signer is pinned -----------------------------------------------------------


@pytest.mark.parametrize("document", ["tcb_info", "qe_identity"])
def test_collateral_signed_by_a_pck_leaf_is_rejected(sim: SimulatedDcap, document: str) -> None:
    """An extracted PCK key signs its own 'UpToDate' TCB info, with its PCK chain (which leads
    to the root) as the issuer chain."""
    collateral = sim.collateral()
    body: bytes = getattr(collateral, document)
    forged = dataclasses.replace(
        collateral,
        **{
            document: body,
            f"{document}_signature": hc.sign_raw(hc.private(sim, "pck"), body),
            f"{document}_issuer_chain": sim.pck_chain_pem().decode(),
        },
    )
    result = _verify(sim, sim.quote(report_data=REPORT_DATA), forged)
    assert _failure(result) == (document, "collateral_signer_untrusted")


def test_pck_leaf_alone_under_the_root_is_rejected(sim: SimulatedDcap) -> None:
    """Two certificates, the right count: the signer is still not the pinned one."""
    collateral = sim.collateral()
    chain = hc.pem([sim.pck_certificate, sim.root_certificate]).decode()
    forged = dataclasses.replace(
        collateral,
        tcb_info_signature=hc.sign_raw(hc.private(sim, "pck"), collateral.tcb_info),
        tcb_info_issuer_chain=chain,
    )
    result = _verify(sim, sim.quote(report_data=REPORT_DATA), forged)
    assert _failure(result) == ("tcb_info", "collateral_signer_untrusted")


def test_impostor_with_the_signers_name_is_rejected(sim: SimulatedDcap) -> None:
    """The root's own key issues a certificate with the TCB Signing subject but another key."""
    key = hc.derived_key("impostor")
    impostor = hc.certificate(
        subject=sim.tcb_signing_certificate.subject,
        key=key,
        issuer=sim.root_certificate.subject,
        issuer_key=hc.private(sim, "root"),
        serial=77,
        ca=False,
    )
    collateral = sim.collateral()
    forged = dataclasses.replace(
        collateral,
        tcb_info_signature=hc.sign_raw(key, collateral.tcb_info),
        tcb_info_issuer_chain=hc.pem([impostor, sim.root_certificate]).decode(),
    )
    result = _verify(sim, sim.quote(report_data=REPORT_DATA), forged)
    assert _failure(result) == ("tcb_info", "collateral_signer_untrusted")


def test_real_tcb_info_with_the_pck_chain_as_issuer_chain() -> None:
    """On Intel's real data: the quote's own PCK chain is not a collateral signing chain."""
    require_vectors()
    entry = case("gotdxguest-cos113@20250604")
    collateral = load_collateral(require_vectors() / entry["collateral"])
    quote = read(entry["quote"])
    from cllm.quote import parse_quote

    pck_pem = parse_quote(quote).signature_data.certification.data.rstrip(b"\0").decode()
    forged = dataclasses.replace(collateral, tcb_info_issuer_chain=pck_pem)
    result = QuoteVerifier(trust_root=intel_root()).verify(quote, forged, at=entry["at"])
    assert _failure(result) == ("tcb_info", "collateral_signer_untrusted")


def test_intel_pin_is_intels_tcb_signing_certificate() -> None:
    """Both certificates Intel issued for the TCB Signing key match the pin, from real data."""
    root = require_vectors()
    seen = set()
    for path in sorted((root / "collateral").glob("*.json")):
        chain = x509.load_pem_x509_certificates(
            load_collateral(path).tcb_info_issuer_chain.encode()
        )
        assert intel_root().tcb_signer.matches(chain[0]), path.name
        seen.add(chain[0].not_valid_after_utc.year)
    assert seen == {2025, 2032}
    assert intel_root().tcb_signer.subject == INTEL_TCB_SIGNING_SUBJECT
    assert intel_root().tcb_signer.key == INTEL_TCB_SIGNING_KEY


# -- chain bombs -------------------------------------------------------------------------------


@pytest.mark.parametrize("total", range(3, 9))
def test_pck_chain_bomb_is_rejected_by_shape(sim: SimulatedDcap, total: int) -> None:
    quote = hc.quote_with_chain(sim, hc.pck_bomb(sim, total), REPORT_DATA)
    started = time.perf_counter()
    result = _verify(sim, quote, sim.collateral())
    assert time.perf_counter() - started < 1.0  # a generous bound: the bench measures it
    assert _failure(result) == ("pck_chain", "chain_shape_invalid")


@pytest.mark.parametrize("total", range(3, 9))
@pytest.mark.parametrize("field", ["tcb_info_issuer_chain", "qe_identity_issuer_chain"])
def test_signing_chain_bomb_is_rejected_by_shape(
    sim: SimulatedDcap, total: int, field: str
) -> None:
    forged = dataclasses.replace(sim.collateral(), **{field: hc.signing_bomb(sim, total)})
    result = _verify(sim, sim.quote(report_data=REPORT_DATA), forged)
    step = "tcb_info" if field.startswith("tcb") else "qe_identity"
    assert _failure(result) == (step, "chain_shape_invalid")


@pytest.mark.parametrize("total", range(3, 9))
def test_crl_issuer_chain_bomb_is_rejected_by_shape(sim: SimulatedDcap, total: int) -> None:
    forged = dataclasses.replace(sim.collateral(), pck_crl_issuer_chain=hc.crl_bomb(sim, total))
    result = _verify(sim, sim.quote(report_data=REPORT_DATA), forged)
    assert _failure(result) == ("revocation", "chain_shape_invalid")


def test_collateral_pck_chain_bomb_is_rejected_by_shape(sim: SimulatedDcap) -> None:
    forged = dataclasses.replace(
        sim.collateral(), pck_certificate_chain=hc.pck_bomb(sim, 5).decode()
    )
    result = _verify(sim, sim.quote(report_data=REPORT_DATA), forged)
    assert _failure(result) == ("pck_chain", "chain_shape_invalid")


def test_duplicate_subjects_in_two_certificates(sim: SimulatedDcap) -> None:
    (clone,) = hc.clones(sim.pck_ca_certificate.subject, 1)
    chain = hc.pem([sim.pck_certificate, clone])
    result = _verify(sim, hc.quote_with_chain(sim, chain, REPORT_DATA), sim.collateral())
    assert _failure(result) == ("pck_chain", "chain_untrusted")  # clone not issued by the root
    leaf_as_ca = hc.pem([sim.pck_ca_certificate, sim.pck_ca_certificate])
    result = _verify(sim, hc.quote_with_chain(sim, leaf_as_ca, REPORT_DATA), sim.collateral())
    assert _failure(result) == ("pck_chain", "chain_shape_invalid")


def test_oversized_chain_is_refused_unread(sim: SimulatedDcap) -> None:
    # One leaf padded with a huge (non-critical) extension: past the byte cap, never decoded.
    padded = hc.certificate(
        subject=sim.pck_certificate.subject,
        key=hc.derived_key("padded"),
        issuer=sim.pck_ca_certificate.subject,
        issuer_key=hc.private(sim, "pck_ca"),
        serial=5,
        ca=False,
        extra=(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.1"), bytes(20000)),),
    )
    chain = hc.pem([padded, sim.pck_ca_certificate, sim.root_certificate])
    assert len(chain) > MAX_CHAIN_PEM_BYTES
    result = _verify(sim, hc.quote_with_chain(sim, chain, REPORT_DATA), sim.collateral())
    assert _failure(result) == ("pck_chain", "chain_shape_invalid")


def test_ca_that_is_neither_platform_nor_processor(sim: SimulatedDcap) -> None:
    key = hc.derived_key("other-ca")
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "cllm Simulated Other CA")])
    other = hc.certificate(
        subject=name,
        key=key,
        issuer=sim.root_certificate.subject,
        issuer_key=hc.private(sim, "root"),
        serial=9,
        ca=True,
    )
    leaf = hc.certificate(
        subject=sim.pck_certificate.subject,
        key=hc.derived_key("other-leaf"),
        issuer=name,
        issuer_key=key,
        serial=10,
        ca=False,
    )
    result = _verify(
        sim, hc.quote_with_chain(sim, hc.pem([leaf, other]), REPORT_DATA), sim.collateral()
    )
    assert _failure(result) == ("pck_chain", "chain_shape_invalid")


def test_third_certificate_must_be_the_pinned_root(sim: SimulatedDcap) -> None:
    other = SimulatedDcap.from_seed(b"other root", not_before=NOT_BEFORE, not_after=NOT_AFTER)
    chain = hc.pem([sim.pck_certificate, sim.pck_ca_certificate, other.root_certificate])
    result = _verify(sim, hc.quote_with_chain(sim, chain, REPORT_DATA), sim.collateral())
    assert _failure(result) == ("pck_chain", "chain_untrusted")


def test_root_is_optional_in_the_pck_chain(sim: SimulatedDcap) -> None:
    chain = hc.pem([sim.pck_certificate, sim.pck_ca_certificate])
    assert _verify(sim, hc.quote_with_chain(sim, chain, REPORT_DATA), sim.collateral()).ok


# -- CRL issuer chains -------------------------------------------------------------------------


def test_crl_issuer_chain_of_another_ca_is_rejected(sim: SimulatedDcap) -> None:
    """A Processor CA under the same root is a CA, but not the one of this PCK chain."""
    key = hc.derived_key("processor-ca")
    name = x509.Name(
        [x509.NameAttribute(x509.NameOID.COMMON_NAME, "cllm Simulated SGX PCK Processor CA")]
    )
    processor = hc.certificate(
        subject=name,
        key=key,
        issuer=sim.root_certificate.subject,
        issuer_key=hc.private(sim, "root"),
        serial=11,
        ca=True,
    )
    forged = dataclasses.replace(
        sim.collateral(),
        pck_crl_issuer_chain=hc.pem([processor, sim.root_certificate]).decode(),
    )
    result = _verify(sim, sim.quote(report_data=REPORT_DATA), forged)
    assert _failure(result) == ("revocation", "crl_invalid")


def test_crl_issuer_chain_with_the_pck_leaf_is_rejected(sim: SimulatedDcap) -> None:
    forged = dataclasses.replace(
        sim.collateral(), pck_crl_issuer_chain=sim.pck_chain_pem().decode()
    )
    result = _verify(sim, sim.quote(report_data=REPORT_DATA), forged)
    assert _failure(result) == ("revocation", "chain_shape_invalid")


# -- roots loaded from files -------------------------------------------------------------------


def test_simulated_root_file_pins_its_tcb_signer(sim: SimulatedDcap, tmp_path: Path) -> None:
    path = tmp_path / "root.pem"
    path.write_bytes(sim.root_ca_pem())
    root = TrustRoot.from_pem_file(path, name="sim", qe_vendor_id=sim.qe_vendor_id)
    assert root.tcb_signer == sim.trust_root().tcb_signer
    assert root.tcb_signer.matches(sim.tcb_signing_certificate)
    assert not root.tcb_signer.matches(sim.pck_certificate)


def test_root_file_without_a_tcb_signer_is_refused(tmp_path: Path) -> None:
    key = hc.derived_key("bare-root")
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bare root")])
    bare = hc.certificate(subject=name, key=key, issuer=name, issuer_key=key, serial=1, ca=True)
    path = tmp_path / "root.pem"
    path.write_bytes(bare.public_bytes(Encoding.PEM))
    with pytest.raises(CllmError) as raised:
        TrustRoot.from_pem_file(path, name="bare")
    assert raised.value.code == "root_ca_no_tcb_signer"
    signer = hc.certificate(
        subject=name,
        key=hc.derived_key("bare-signer"),
        issuer=name,
        issuer_key=key,
        serial=2,
        ca=False,
    )
    path.write_bytes(hc.pem([bare, signer]))
    assert TrustRoot.from_pem_file(path, name="bare").tcb_signer.matches(signer)


def test_intel_root_file_with_a_foreign_signer_is_refused(
    sim: SimulatedDcap, tmp_path: Path
) -> None:
    path = tmp_path / "intel.pem"
    intel = intel_root().certificate
    path.write_bytes(hc.pem([intel, sim.tcb_signing_certificate]))
    with pytest.raises(CllmError) as raised:
        TrustRoot.from_pem_file(path, name="intel")
    assert raised.value.code == "root_ca_malformed"
    path.write_bytes(hc.pem([intel]))
    assert TrustRoot.from_pem_file(path, name="intel") is intel_root()


# -- the time budget ---------------------------------------------------------------------------


def test_verification_stops_at_its_deadline(sim: SimulatedDcap) -> None:
    """Each step is bounded by construction; the deadline is the second line: checked before
    every step against an injected monotonic clock."""
    ticks = iter(range(1000))
    verifier = QuoteVerifier(
        trust_root=sim.trust_root(), budget_s=3.5, monotonic=lambda: float(next(ticks))
    )
    # Clock read 0 sets the deadline at 3.5; reads 1, 2, 3 pass steps 1-3, read 4 stops step 4.
    result = verifier.verify(sim.quote(report_data=REPORT_DATA), sim.collateral(), at=AT)
    assert _failure(result) == ("revocation", "appraisal_timeout")
    assert [step.ok for step in result.steps] == [True, True, True, False]
    with pytest.raises(ValueError, match="budget_s"):
        QuoteVerifier(trust_root=sim.trust_root(), budget_s=0)


def test_signer_name_with_a_key_of_another_kind(sim: SimulatedDcap) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ed25519

    other = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))
    cert = (
        x509.CertificateBuilder()
        .subject_name(sim.tcb_signing_certificate.subject)
        .issuer_name(sim.root_certificate.subject)
        .public_key(other.public_key())
        .serial_number(31)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .sign(hc.private(sim, "root"), hashes.SHA256())
    )
    forged = dataclasses.replace(
        sim.collateral(), tcb_info_issuer_chain=hc.pem([cert, sim.root_certificate]).decode()
    )
    result = _verify(sim, sim.quote(report_data=REPORT_DATA), forged)
    assert _failure(result) == ("tcb_info", "collateral_signer_untrusted")
