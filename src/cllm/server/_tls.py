"""``--tls self-signed``: a certificate and key made at start and kept in memory only.

uvicorn loads TLS material from paths, so the PEMs go into anonymous memory files
(``memfd_create``) and uvicorn reads them through ``/proc/self/fd``: the key never touches a
disk.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cllm.errors import ServerError

__all__ = ["InMemoryTls", "self_signed_tls"]


@dataclass(frozen=True, slots=True)
class InMemoryTls:
    cert_pem: bytes
    cert_path: str
    key_path: str
    _fds: tuple[int, int]

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)


def _memfd(name: str, data: bytes) -> tuple[int, str]:
    if not hasattr(os, "memfd_create"):
        raise ServerError("--tls self-signed needs memfd_create (Linux)", code="tls_invalid")
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    return fd, f"/proc/self/fd/{fd}"


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host or "localhost")


def self_signed_tls(host: str, *, now: datetime.datetime) -> InMemoryTls:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host or "cllm")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([_san(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_fd, cert_path = _memfd("cllm-tls-cert", cert_pem)
    key_fd, key_path = _memfd("cllm-tls-key", key_pem)
    return InMemoryTls(cert_pem, cert_path, key_path, (cert_fd, key_fd))
