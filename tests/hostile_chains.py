"""Certificate chains an attacker can build, for tests and ``bench/chains.py``.

The quote's PCK chain and every PEM chain in carried collateral are chosen by whoever sends the
evidence. A path builder given several CA certificates that share one name and one key tries
every ordering of them (issue 14: 2.4 s with 3, 27 s with 4, about tenfold per certificate).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from cllm.tee import SimulatedDcap

_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def derived_key(label: str) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(hashlib.sha256(label.encode()).digest(), "big") >> 8
    return ec.derive_private_key(scalar + 1, ec.SECP256R1())


def pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(Encoding.PEM) for cert in certs)


def certificate(
    *,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    serial: int,
    ca: bool,
    not_before: datetime = datetime(2020, 1, 1, tzinfo=UTC),
    not_after: datetime = datetime(2040, 1, 1, tzinfo=UTC),
    extra: tuple[x509.ExtensionType, ...] = (),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    )
    if ca:
        builder = builder.add_extension(_CA_USAGE, True)
    for ext in extra:
        builder = builder.add_extension(ext, False)
    return builder.sign(issuer_key, hashes.SHA256())


def clones(name: x509.Name, count: int, *, label: str = "bomb") -> list[x509.Certificate]:
    """``count`` CA certificates with one subject, one issuer (the same name) and one key,
    differing only in their serial numbers: every ordering of them is a candidate path."""
    key = derived_key(label)
    return [
        certificate(subject=name, key=key, issuer=name, issuer_key=key, serial=1000 + i, ca=True)
        for i in range(count)
    ]


def pck_bomb(sim: SimulatedDcap, total: int) -> bytes:
    """A PCK chain of ``total`` certificates: a leaf issued under the PCK CA's name by the
    clones' key, then ``total - 1`` clones of the PCK CA (one name, one key, each validly
    signing every other): a path builder tries every ordering of the clones."""
    name = sim.pck_ca_certificate.subject
    leaf = certificate(
        subject=sim.pck_certificate.subject,
        key=derived_key("bomb-leaf"),
        issuer=name,
        issuer_key=derived_key("bomb"),
        serial=999,
        ca=False,
    )
    return pem([leaf, *clones(name, total - 1)])


def signing_bomb(sim: SimulatedDcap, total: int) -> str:
    """A collateral signing chain of ``total`` certificates: the genuine TCB Signing
    certificate, clones of the root's name, then the root."""
    extra = clones(sim.root_certificate.subject, total - 2)
    return pem([sim.tcb_signing_certificate, *extra, sim.root_certificate]).decode()


def crl_bomb(sim: SimulatedDcap, total: int) -> str:
    extra = clones(sim.root_certificate.subject, total - 2)
    return pem([sim.pck_ca_certificate, *extra, sim.root_certificate]).decode()


def quote_with_chain(sim: SimulatedDcap, chain: bytes, report_data: bytes) -> bytes:
    """A genuine simulated quote whose certification data carries ``chain`` instead (the
    chain is not covered by the quote's signature)."""
    original = sim.pck_chain_pem
    sim.pck_chain_pem = lambda: chain  # type: ignore[method-assign]
    try:
        return sim.quote(report_data=report_data)
    finally:
        sim.pck_chain_pem = original  # type: ignore[method-assign]


def private(sim: SimulatedDcap, name: str) -> Any:
    """One of the simulated world's private keys (``root``, ``pck_ca``, ``pck``)."""
    return getattr(sim, f"_{name}_key")


def sign_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")
