"""TLS that ends inside the TD: the certificate the server presents is the one its evidence
binds (``tls_spki_sha256``), so a client can tell no load balancer terminated the connection."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
from collections.abc import Iterator

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cllm.evidence import check_evidence, parse_evidence
from serving import ServeProcess, start_serve


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("tls")
    served = start_serve(
        ["--tls", "self-signed"], state_dir=root / "state", log_path=root / "serve.log"
    )
    yield served
    served.stop()


def _presented_spki_sha256(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we pin by the binding, not by a CA
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def test_the_presented_certificate_is_the_bound_one(tls_server: ServeProcess) -> None:
    assert tls_server.url.startswith("https://")
    nonce = os.urandom(32)
    response = httpx.get(
        f"{tls_server.url}/v1/attestation/report",
        params={"nonce": nonce.hex()},
        verify=False,
        timeout=60,
    )
    evidence = parse_evidence(response.content)
    assert check_evidence(evidence, expected_nonce=nonce).ok
    assert evidence.binding.tls_spki_sha256 == _presented_spki_sha256(tls_server.port)


def test_plain_http_is_not_served_on_the_tls_port(tls_server: ServeProcess) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.port}/healthz", timeout=10)


def test_the_key_file_is_anonymous_memory(tls_server: ServeProcess) -> None:
    fds = f"/proc/{tls_server.process.pid}/fd"
    targets = [os.readlink(f"{fds}/{fd}") for fd in os.listdir(fds)]
    assert any(target.startswith("/memfd:cllm-tls-key") for target in targets)
    state = tls_server.log_path.parent
    for path in state.rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes() or "simulated" in path.parts
