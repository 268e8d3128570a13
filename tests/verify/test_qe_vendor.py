"""The QE vendor a trust root's quotes must carry is decided in cllm.verify (``qe_vendor_of``,
``TrustRoot.from_pem_file``), not by its callers: the simulated QE's for cllm's simulation root,
Intel's for Intel's root and for any other root; an explicit vendor always wins."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from cllm.errors import CllmError
from cllm.quote import layout
from cllm.tee import SimulatedDcap
from cllm.verify import (
    SIMULATED_QE_VENDOR_ID,
    SIMULATED_ROOT_CA_NAME,
    QuoteVerifier,
    TrustRoot,
    intel_root,
    qe_vendor_of,
)
from cllm.verify._roots import INTEL_SGX_ROOT_CA_PEM

START = datetime(2025, 1, 1, tzinfo=UTC)
AT = int(START.timestamp()) + 86400


@pytest.fixture(scope="module")
def sim() -> SimulatedDcap:
    return SimulatedDcap.from_seed(
        b"qe-vendor", not_before=START, not_after=datetime(2026, 1, 1, tzinfo=UTC)
    )


def _self_signed(common_name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(START)
        .not_valid_after(START + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_each_root_has_its_qe_vendor(sim: SimulatedDcap) -> None:
    assert qe_vendor_of(sim.root_certificate) == SIMULATED_QE_VENDOR_ID
    assert qe_vendor_of(intel_root().certificate) == layout.INTEL_QE_VENDOR_ID
    assert qe_vendor_of(_self_signed("Example Corp SGX Root CA")) == layout.INTEL_QE_VENDOR_ID
    assert SIMULATED_QE_VENDOR_ID != layout.INTEL_QE_VENDOR_ID
    # The simulator's world uses the constants cllm.verify knows it by.
    assert sim.qe_vendor_id == SIMULATED_QE_VENDOR_ID
    assert sim.trust_root().name == SIMULATED_ROOT_CA_NAME


def test_a_simulation_root_file_verifies_its_quotes_without_naming_the_vendor(
    sim: SimulatedDcap, tmp_path: Path
) -> None:
    path = tmp_path / "root.pem"
    path.write_bytes(sim.root_ca_pem())
    root = TrustRoot.from_pem_file(path, name="sim")
    assert root.qe_vendor_id == SIMULATED_QE_VENDOR_ID
    result = QuoteVerifier(trust_root=root).verify(
        sim.quote(report_data=bytes(64)), sim.collateral(), at=AT
    )
    assert result.ok, result.error


def test_an_explicit_vendor_wins_and_is_enforced(sim: SimulatedDcap, tmp_path: Path) -> None:
    path = tmp_path / "root.pem"
    path.write_bytes(sim.root_ca_pem())
    root = TrustRoot.from_pem_file(path, name="sim", qe_vendor_id=layout.INTEL_QE_VENDOR_ID)
    result = QuoteVerifier(trust_root=root).verify(
        sim.quote(report_data=bytes(64)), sim.collateral(), at=AT
    )
    assert not result.ok
    assert result.error is not None and result.error.code == "qe_vendor_mismatch"


def test_the_intel_root_file_is_the_pinned_intel_root(tmp_path: Path) -> None:
    path = tmp_path / "intel.pem"
    path.write_text(INTEL_SGX_ROOT_CA_PEM)
    root = TrustRoot.from_pem_file(path, name="intel")
    assert root is intel_root()
    assert root.qe_vendor_id == layout.INTEL_QE_VENDOR_ID


def test_a_root_named_like_the_simulation_root_expects_the_simulated_qe(tmp_path: Path) -> None:
    # Attacker's view: a root that calls itself cllm's simulation root gets nothing but the
    # simulated QE vendor, whose quotes Intel's root never accepts; it is trusted only because
    # its user named the file, and everything else (TCB signer, chains) is checked as for any
    # root.
    cert = _self_signed(SIMULATED_ROOT_CA_NAME)
    assert qe_vendor_of(cert) == SIMULATED_QE_VENDOR_ID
    path = tmp_path / "root.pem"
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    with pytest.raises(CllmError) as raised:
        TrustRoot.from_pem_file(path, name="fake")  # no pinned TCB Signing certificate
    assert raised.value.code == "root_ca_no_tcb_signer"
