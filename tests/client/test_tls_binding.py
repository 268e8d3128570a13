"""TLS that the evidence binds (``tls_spki_sha256``): straight to the server, the connection
presents the bound key and the verdict says TLS ends in the TD; through a TLS-terminating
middlebox with its own certificate (issued by a CA this client trusts, as a corporate proxy's
would be) the client refuses with ``tls_binding_mismatch`` before anything is sent: the
middlebox would otherwise read the API key."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import NameOID

from cllm.client import Client, LocalVerifier
from cllm.errors import AttestationError
from serving import ServeProcess, start_serve

API_KEY = "sk-SECRET-7731"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("tls-bound")
    served = start_serve(
        ["--tls", "self-signed"], state_dir=root / "state", log_path=root / "serve.log"
    )
    yield served
    served.stop()


def _root(server: ServeProcess) -> Path:
    return server.log_path.parent / "state" / "simulated" / "root-ca.pem"


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _ca_and_leaf(directory: Path) -> tuple[Path, Path, Path]:
    """A CA the client trusts and a certificate for 127.0.0.1 that it issued."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("corporate CA"))
        .issuer_name(_name("corporate CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return paths


@dataclass
class Middlebox:
    """Terminates TLS with its own certificate, keeps the plaintext, re-encrypts to the
    server: a TLS-inspecting proxy or load balancer."""

    target_port: int
    cert: Path
    key: Path
    port: int = 0
    seen: bytearray = field(default_factory=bytearray)
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event = field(init=False)
    _thread: threading.Thread = field(init=False)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.seen += data
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream = ssl.create_default_context()
        upstream.check_hostname = False
        upstream.verify_mode = ssl.CERT_NONE
        server_r, server_w = await asyncio.open_connection(
            "127.0.0.1", self.target_port, ssl=upstream
        )
        await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))

    def __enter__(self) -> Middlebox:
        ready = threading.Event()

        async def main() -> None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.cert, self.key)
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=context)
            self.port = server.sockets[0].getsockname()[1]
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            ready.set()
            await self._stop.wait()
            server.close()

        self._thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)


def test_straight_to_the_server_tls_ends_in_the_td(tls_server: ServeProcess) -> None:
    # No CA vouches for a self-signed certificate: the evidence does (checked per connection).
    transport = httpx.HTTPTransport(verify=False)
    verifier = LocalVerifier(trust_simulated_root=_root(tls_server))
    with Client(tls_server.url, verifier=verifier, transport=transport) as client:
        result = client.verify()
        assert result.status == "warning"
        assert result.tls is not None and result.tls["ends_in_td"] is True
        reply = client.chat.completions.create(
            messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
    assert reply.content


def test_a_middlebox_with_its_own_certificate_is_refused(
    tls_server: ServeProcess, tmp_path: Path
) -> None:
    ca, leaf, key = _ca_and_leaf(tmp_path)
    trusting = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=str(ca)))
    verifier = LocalVerifier(trust_simulated_root=_root(tls_server))
    with Middlebox(tls_server.port, leaf, key) as box:
        url = f"https://127.0.0.1:{box.port}"
        with Client(url, verifier=verifier, transport=trusting, api_key=API_KEY) as client:
            result = client.verify()
            assert result.status == "contraindicated"
            assert "tls_binding_mismatch" in [r.code for r in result.reasons]
            assert result.keys is None
            with pytest.raises(AttestationError):
                client.chat.completions.create(
                    messages=[{"role": "user", "content": "Hi"}], max_tokens=2
                )
        seen = bytes(box.seen)
    assert b"/v1/chat/completions" not in seen
    assert API_KEY.encode() not in seen


class _ChatsVia(httpx.HTTPTransport):
    """Evidence straight from the server, chats through the middlebox: a box that steps in
    only after verification (or a pooled connection that now goes elsewhere)."""

    def __init__(self, box_port: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._box = box_port

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/chat/"):
            request.url = request.url.copy_with(port=self._box)
        return super().handle_request(request)


def test_a_middlebox_after_verification_gets_no_request(
    tls_server: ServeProcess, tmp_path: Path
) -> None:
    ca, leaf, key = _ca_and_leaf(tmp_path)
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's own certificate is self-signed
    verifier = LocalVerifier(trust_simulated_root=_root(tls_server))
    with Middlebox(tls_server.port, leaf, key) as box:
        transport = _ChatsVia(box.port, verify=context)
        with Client(
            tls_server.url, verifier=verifier, transport=transport, api_key=API_KEY
        ) as client:
            assert client.verify().status == "warning"
            with pytest.raises(AttestationError) as caught:
                client.chat.completions.create(
                    messages=[{"role": "user", "content": "Hi"}], max_tokens=2
                )
        seen = bytes(box.seen)
    assert caught.value.code == "tls_binding_mismatch"
    assert seen == b""  # refused at the handshake: not even the request line
