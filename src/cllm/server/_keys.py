"""The server's per-boot keys: created in memory at start, never written anywhere."""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cllm.crypto import HpkeKeyPair, SigningKey
from cllm.errors import ServerError
from cllm.evidence import Binding

__all__ = ["ServerKeys", "tls_spki_sha256"]


def tls_spki_sha256(cert_pem: bytes) -> bytes:
    """SHA-256 of the certificate's SubjectPublicKeyInfo: what the binding pins, so a client
    can tell the TLS connection ends inside the TD."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ServerError("the TLS certificate is not PEM", code="tls_invalid") from exc
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


@dataclass(frozen=True, slots=True)
class ServerKeys:
    signing: SigningKey
    hpke: HpkeKeyPair
    tls_spki_sha256: bytes | None

    @classmethod
    def generate(cls, *, tls_cert_pem: bytes | None) -> ServerKeys:
        return cls(
            signing=SigningKey.generate(),
            hpke=HpkeKeyPair.generate(),
            tls_spki_sha256=tls_spki_sha256(tls_cert_pem) if tls_cert_pem else None,
        )

    def binding(self, nonce: bytes) -> Binding:
        return Binding(
            nonce=nonce,
            signing_key=self.signing.public_spki_der(),
            hpke_key=self.hpke.public_bytes(),
            tls_spki_sha256=self.tls_spki_sha256,
        )


def check_tls_pair(cert: Path, key: Path) -> None:
    """Fail at start, not at the first handshake, when the pair does not load."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ServerError(f"cannot load TLS certificate/key: {exc}", code="tls_invalid") from exc
