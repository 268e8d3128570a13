"""What ``cllm proxy`` does when trust is missing or changes: a server that does not verify gets
errors in the API's own format and never a byte of the prompt; a server with no TEE naming its
own verifier is judged by the user's verifier, not by its own; a restarted server (new keys) is
verified again transparently; a verdict is renewed when it expires."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from cllm.token import TokenSigner
from gateway import LittleServer, json_answer, signing_verifier, start_proxy
from proxying import RecordingProxy
from serving import MODEL, ServeProcess, free_port, start_serve

PROMPT = "The launch code is PLOVER-5528."
MESSAGES = [{"role": "user", "content": PROMPT}]


def test_an_unverified_server_gets_errors_and_nothing_else(
    server: ServeProcess, config_home: Path, tmp_path: Path
) -> None:
    """Simulated evidence the user does not trust: every API answers 503 with the reason, in
    its own error format; the server never sees the chat routes, let alone the prompt."""
    with RecordingProxy(server.port) as recorded:
        proxy = start_proxy(recorded.url, [], config_home=config_home, log_path=tmp_path / "p.log")
        try:
            client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
            assert caught.value.status_code == 503
            error = caught.value.body
            assert isinstance(error, dict)
            assert error["code"] == "attestation_failed"
            assert "simulated_not_trusted" in [r["code"] for r in error["reasons"]]
            with pytest.raises(ollama.ResponseError) as refused:
                ollama.Client(host=proxy.url).chat(model=MODEL, messages=MESSAGES, stream=False)
            assert refused.value.status_code == 503
            assert "simulated_not_trusted" in refused.value.error
            with pytest.raises(ollama.ResponseError):
                list(
                    ollama.Client(host=proxy.url).generate(model=MODEL, prompt=PROMPT, stream=True)
                )
            assert proxy.status()["status"] == "contraindicated"
        finally:
            proxy.stop()
        wire = recorded.captured()
    assert b"PLOVER" not in wire
    assert b"/v1/chat/completions" not in wire
    assert b"/api/chat" not in wire
    assert b"/api/generate" not in wire


def test_a_server_with_no_tee_naming_its_own_verifier(
    server: ServeProcess, config_home: Path, tmp_path: Path
) -> None:
    """No TEE at all: it relays a genuine server's evidence with its own keys swapped in, and
    names (in /healthz) a verifier of its own that signs "affirming" for anything. The proxy
    asks the user's verifier, never the server's, and the impostor receives no prompt."""
    own_verifier = signing_verifier(TokenSigner.load_or_create(tmp_path / "fake"), lambda c: None)

    def handle(method: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if path == "/healthz":
            return json_answer({"status": "ok", "tee": "tdx", "verifier": own_verifier.url})
        if path.startswith("/v1/attestation/report"):
            doc = httpx.get(f"{server.url}{path}", timeout=60).json()
            doc["binding"]["hpke_key"] = base64.b64encode(os.urandom(32)).decode()
            return json_answer(doc)
        return json_answer({"error": {"message": "nope"}}, 400)

    with own_verifier, LittleServer(handle) as impostor:
        # The user's configuration names the real simulated root (what the user trusts).
        root = server.log_path.parent / "state" / "simulated" / "root-ca.pem"
        args = ["--trust-simulated-root", str(root)]
        proxy = start_proxy(
            impostor.url, args, config_home=config_home, log_path=tmp_path / "p.log"
        )
        try:
            client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="x", max_retries=0)
            for stream in (False, True):
                with pytest.raises(openai.APIStatusError) as caught:
                    client.chat.completions.create(
                        model=MODEL,
                        messages=MESSAGES,
                        stream=stream,  # type: ignore[call-overload]
                    )
                assert caught.value.status_code == 503
                body = caught.value.body
                assert isinstance(body, dict)
                assert "binding_mismatch" in [r["code"] for r in body["reasons"]]
            with pytest.raises(ollama.ResponseError):
                ollama.Client(host=proxy.url).chat(model=MODEL, messages=MESSAGES, stream=False)
            status = proxy.status()
            assert status["status"] == "contraindicated"
            assert status["verifier"] == "local"  # never the server's
        finally:
            proxy.stop()
        received = bytes(impostor.received)
    assert b"PLOVER" not in received
    assert b"POST" not in received  # nothing but evidence requests reached it
    assert b"/v1/attestation" not in bytes(own_verifier.received)  # its verifier: never asked


def test_a_restarted_server_is_verified_again_transparently(
    tmp_path: Path, config_home: Path
) -> None:
    port = free_port()
    state = tmp_path / "state"
    first = start_serve([], state_dir=state, log_path=tmp_path / "a.log", port=port)
    root = state / "simulated" / "root-ca.pem"
    proxy = start_proxy(
        first.url,
        ["--trust-simulated-root", str(root)],
        config_home=config_home,
        log_path=tmp_path / "p.log",
    )
    try:
        client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="x", max_retries=0)
        assert client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)  # type: ignore[arg-type]
        before = proxy.status()
        first.stop()
        second = start_serve([], state_dir=state, log_path=tmp_path / "b.log", port=port)
        try:
            for stream in (False, True):
                reply = client.chat.completions.create(
                    model=MODEL,
                    messages=MESSAGES,
                    max_tokens=4,
                    stream=stream,  # type: ignore[call-overload]
                )
                if stream:
                    assert "".join(c.choices[0].delta.content or "" for c in reply if c.choices)
                else:
                    assert reply.choices[0].message.content
            after = proxy.status()
        finally:
            second.stop()
    finally:
        proxy.stop()
    assert after["keys"]["hpke_key"] != before["keys"]["hpke_key"]  # new keys, verified
    assert after["proxy"]["attestations"] > before["proxy"]["attestations"]
    assert after["status"] == "warning"


def test_an_expired_verdict_is_renewed_before_the_next_request(
    server: ServeProcess, simulated_root: Path, config_home: Path, tmp_path: Path
) -> None:
    """A policy whose verdicts last 2 s: a request after that first verifies again, with a
    fresh nonce, before anything is sent."""
    policy = tmp_path / "short.toml"
    policy.write_text('[freshness]\nmax_token_age = "2s"\n')
    with RecordingProxy(server.port) as recorded:
        proxy = start_proxy(
            recorded.url,
            ["--trust-simulated-root", str(simulated_root), "--policy", str(policy)],
            config_home=config_home,
            log_path=tmp_path / "p.log",
        )
        try:
            client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="x", max_retries=0)
            time.sleep(2.1)
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)  # type: ignore[arg-type]
            time.sleep(2.1)
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)  # type: ignore[arg-type]
        finally:
            proxy.stop()
        wire = recorded.captured().decode("latin-1")
    nonces = [part.split(" ", 1)[0] for part in wire.split("GET /v1/attestation/report?nonce=")[1:]]
    assert len(nonces) == 3  # at start, and once after each expiry
    assert len(set(nonces)) == 3
    # each renewal came before the request it preceded
    chats = [i for i in range(len(wire)) if wire.startswith("POST /v1/chat/completions", i)]
    reports = [i for i in range(len(wire)) if wire.startswith("GET /v1/attestation/report", i)]
    assert reports[1] < chats[0] < reports[2] < chats[1]
