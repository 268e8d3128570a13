"""A man in the middle, between the client and a real server or a real verifier, tries what a
hostile network or host would: replay old evidence, present one server's evidence with another
server's keys, swap in its own HPKE key, re-sign answers, forge the verifier's token. Each is
caught, and nothing is sent to a server that did not verify."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cllm.client import (
    Client,
    LocalVerifier,
    PinnedKeys,
    RemoteVerifier,
    attest,
    post,
)
from cllm.crypto import SigningKey
from cllm.errors import AttestationError, CryptoError
from serving import MODEL, ServeProcess, VerifierProcess, start_serve

Edit = Callable[[httpx.Request, httpx.Response], httpx.Response]


class Tamper(httpx.BaseTransport):
    """Forwards to the real server, then lets ``edit`` change what comes back."""

    def __init__(self, edit: Edit, *, reroute: dict[str, str] | None = None) -> None:
        self._inner = httpx.HTTPTransport()
        self._edit = edit
        self._reroute = reroute or {}
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        for prefix, target in self._reroute.items():
            if request.url.path.startswith(prefix):
                request.url = request.url.copy_with(port=int(target))
        response = self._inner.handle_request(request)
        response.read()
        return self._edit(request, response)


def _json_response(response: httpx.Response, doc: object) -> httpx.Response:
    return httpx.Response(response.status_code, json=doc)


@pytest.fixture(params=["local", "remote"])
def trusting(
    request: pytest.FixtureRequest, simulated_root: Path, verifier: VerifierProcess
) -> LocalVerifier | RemoteVerifier:
    if request.param == "local":
        return LocalVerifier(trust_simulated_root=simulated_root)
    return RemoteVerifier(verifier.url)


def _codes(result: object) -> list[str]:
    return [reason.code for reason in result.reasons]  # type: ignore[attr-defined]


def test_replayed_evidence_with_an_old_nonce_is_rejected(
    server: ServeProcess, trusting: LocalVerifier | RemoteVerifier
) -> None:
    old = httpx.get(
        f"{server.url}/v1/attestation/report", params={"nonce": os.urandom(32).hex()}, timeout=60
    ).json()

    def replay(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path == "/v1/attestation/report":
            return _json_response(response, old)
        return response

    with httpx.Client(base_url=server.url, transport=Tamper(replay), timeout=60) as http:
        result = attest(http, trusting)
    assert result.status == "contraindicated"
    assert result.keys is None
    assert "nonce_mismatch" in _codes(result)


@pytest.fixture(scope="module")
def server_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("server-b")
    served = start_serve([], state_dir=root / "state", log_path=root / "serve.log")
    yield served
    served.stop()


def _binding_of(server: ServeProcess) -> dict[str, str]:
    doc = httpx.get(
        f"{server.url}/v1/attestation/report", params={"nonce": os.urandom(32).hex()}, timeout=60
    ).json()
    return dict(doc["binding"])


@pytest.mark.parametrize("swapped", [("signing_key", "hpke_key"), ("hpke_key",), ("signing_key",)])
def test_evidence_of_server_a_with_keys_of_server_b_is_rejected(
    server: ServeProcess,
    server_b: ServeProcess,
    trusting: LocalVerifier | RemoteVerifier,
    swapped: tuple[str, ...],
) -> None:
    other = _binding_of(server_b)

    def swap(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path != "/v1/attestation/report":
            return response
        doc = response.json()
        for name in swapped:
            doc["binding"][name] = other[name]
        return _json_response(response, doc)

    with httpx.Client(base_url=server.url, transport=Tamper(swap), timeout=60) as http:
        result = attest(http, trusting)
    assert result.status == "contraindicated"
    assert result.keys is None
    assert "binding_mismatch" in _codes(result)


def test_a_proxy_swapping_in_its_own_hpke_key_is_caught(
    server: ServeProcess, simulated_root: Path
) -> None:
    """The proxy's key in the binding breaks report_data, so the client never seals to it."""
    from cllm.crypto import HpkeKeyPair

    mine = HpkeKeyPair.generate().public_bytes()

    def swap(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path != "/v1/attestation/report":
            return response
        doc = response.json()
        doc["binding"]["hpke_key"] = base64.b64encode(mine).decode()
        return _json_response(response, doc)

    tamper = Tamper(swap)
    verifier = LocalVerifier(trust_simulated_root=simulated_root)
    with (
        Client(server.url, verifier=verifier, transport=tamper) as client,
        pytest.raises(AttestationError) as caught,
    ):
        client.chat.completions.create(messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert "binding_mismatch" in caught.value.message
    assert "/v1/chat/completions" not in tamper.paths


def test_evidence_of_a_while_b_answers_never_falls_back(
    server: ServeProcess, server_b: ServeProcess, simulated_root: Path
) -> None:
    """Evidence from A (genuine), chats routed to B: B cannot open requests sealed to A's key;
    the client verifies again, gets A's keys again, and gives up rather than send in clear."""
    tamper = Tamper(lambda _, response: response, reroute={"/v1/chat/": str(server_b.port)})
    verifier = LocalVerifier(trust_simulated_root=simulated_root)
    with (
        Client(server.url, verifier=verifier, transport=tamper) as client,
        pytest.raises(AttestationError) as caught,
    ):
        client.chat.completions.create(
            messages=[{"role": "user", "content": "x"}], max_tokens=2, model=MODEL
        )
    assert caught.value.code == "server_key_unusable"
    assert tamper.paths.count("/v1/attestation/report") == 2  # verified again before giving up


def test_a_proxy_re_signing_answers_is_detected(server: ServeProcess, simulated_root: Path) -> None:
    verifier = LocalVerifier(trust_simulated_root=simulated_root)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        result = attest(http, verifier)
    assert result.keys is not None
    forger = SigningKey.generate()
    doc = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}

    def re_sign(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        body = response.content
        answer = json.loads(body)
        answer.pop("cllm_signature")
        answer["choices"][0]["message"]["content"] = "Send your password to evil.example"
        record = json.dumps(answer, separators=(",", ":")).encode()
        forged = forger.signer(request_body=request.content).sign_record(record)
        return httpx.Response(200, content=forged)

    with (
        httpx.Client(base_url=server.url, transport=Tamper(re_sign), timeout=60) as http,
        pytest.raises(CryptoError) as caught,
    ):
        post(http, "/v1/chat/completions", doc, keys=result.keys, encrypt=False)
    assert caught.value.code == "signature_invalid"
    # The honest answer, untouched, verifies under the pinned key.
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert post(http, "/v1/chat/completions", doc, keys=result.keys, encrypt=False).signed


def test_a_sealed_answer_altered_on_the_way_is_detected(
    server: ServeProcess, simulated_root: Path
) -> None:
    def flip(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path != "/v1/chat/completions":
            return response
        body = bytearray(response.content)
        body[-5] ^= 0x01  # inside the last record
        return httpx.Response(
            response.status_code, headers=response.headers, content=bytes(body), request=request
        )

    verifier = LocalVerifier(trust_simulated_root=simulated_root)
    with (
        Client(server.url, verifier=verifier, transport=Tamper(flip)) as client,
        pytest.raises(CryptoError) as caught,
    ):
        client.chat.completions.create(messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert caught.value.code == "response_chunk_invalid"


def test_a_token_with_a_bad_signature_is_rejected(
    server: ServeProcess, verifier: VerifierProcess
) -> None:
    def forge(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path != "/v1/attestation":
            return response
        header, payload, signature = response.json()["token"].split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["status"] = "affirming"  # what a forger wants
        claims["simulated"] = False
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        return _json_response(response, {"token": f"{header}.{payload}.{signature}"})

    remote = RemoteVerifier(verifier.url, http=httpx.Client(transport=Tamper(forge), timeout=60))
    with httpx.Client(base_url=server.url, timeout=60) as http:
        result = attest(http, remote)
    assert result.status == "contraindicated"
    assert _codes(result) == ["token_bad_signature"]
    assert result.keys is None


def test_a_token_about_another_nonce_is_rejected(
    server: ServeProcess, verifier: VerifierProcess
) -> None:
    stale: dict[str, str] = {}

    def swap_token(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path != "/v1/attestation":
            return response
        if not stale:
            stale["token"] = response.json()["token"]
        return _json_response(response, {"token": stale["token"]})

    remote = RemoteVerifier(
        verifier.url, http=httpx.Client(transport=Tamper(swap_token), timeout=60)
    )
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert attest(http, remote).status == "warning"  # the first token is genuinely ours
        again = attest(http, remote)  # the verifier's answer replayed for a new nonce
    assert again.status == "contraindicated"
    assert _codes(again) == ["token_nonce_mismatch"]


def test_pinned_keys_come_from_the_verified_binding(
    server: ServeProcess, simulated_root: Path
) -> None:
    with Client(server.url, verifier=LocalVerifier(trust_simulated_root=simulated_root)) as client:
        result = client.verify()
    binding = _binding_of(server)
    assert result.keys == PinnedKeys(
        signing_key=base64.b64decode(binding["signing_key"]),
        hpke_key=base64.b64decode(binding["hpke_key"]),
    )
