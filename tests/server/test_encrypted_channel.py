"""End-to-end encryption to the attested HPKE key, through a real forwarding proxy that records
every byte: the proxy must see neither the prompt nor the answer, and the client must get an
answer signed by the attested key."""

from __future__ import annotations

import json

import httpx
import pytest

from cllm.client import PinnedKeys, post
from cllm.crypto import ResponseOpener, request_aad, seal_request
from cllm.errors import CryptoError
from proxying import RecordingProxy
from serving import MODEL, ServeProcess, http

SECRET_PROMPT = "My locker code is 7391-QUOKKA. Repeat the locker code back to me."


def _ask(
    url: str, path: str, doc: dict[str, object], keys: PinnedKeys
) -> tuple[bytes, list[bytes]]:
    pieces: list[bytes] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        answer = post(client, path, doc, keys=keys, encrypt=True, on_piece=pieces.append)
    assert answer.status_code == 200
    assert answer.signed is not None
    return answer.body, pieces


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("path", "doc"),
    [
        (
            "/v1/chat/completions",
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": SECRET_PROMPT}],
                "max_tokens": 24,
                "temperature": 0,
            },
        ),
        (
            "/api/chat",
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": SECRET_PROMPT}],
                "options": {"num_predict": 24, "temperature": 0},
            },
        ),
        (
            "/api/generate",
            {
                "model": MODEL,
                "prompt": SECRET_PROMPT,
                "options": {"num_predict": 24, "temperature": 0},
            },
        ),
    ],
)
def test_proxy_sees_only_ciphertext(
    served: ServeProcess, pinned: PinnedKeys, path: str, doc: dict[str, object], stream: bool
) -> None:
    with RecordingProxy(served.port) as proxy:
        body, pieces = _ask(proxy.url, path, {**doc, "stream": stream}, pinned)
        wire = proxy.captured()
    # The answer's text, as it appears in the plaintext body.
    if path == "/v1/chat/completions" and not stream:
        text = json.loads(body)["choices"][0]["message"]["content"]
    elif stream and path == "/v1/chat/completions":
        text = "".join(
            json.loads(line[6:])["choices"][0]["delta"].get("content", "")
            for line in body.split(b"\n\n")
            if line.startswith(b"data: {") and b'"choices":[{' in line
        )
    else:
        key = "message" if path == "/api/chat" else "response"
        lines = [json.loads(line) for line in body.splitlines() if line]
        text = "".join((line[key]["content"] if key == "message" else line[key]) for line in lines)
    assert len(text) >= 8
    assert b"7391" not in wire
    assert b"QUOKKA" not in wire
    assert b"locker" not in wire
    assert text.encode() not in wire
    assert b"cllm_signature" not in wire  # the signature rides inside the encryption
    assert b"application/cllm-hpke-chunks" in wire  # it did go through the proxy
    if stream:
        assert len(pieces) > 3  # sealed record by record, not buffered


def test_a_sealed_body_cannot_be_redirected_to_another_route(
    served: ServeProcess, pinned: PinnedKeys
) -> None:
    doc = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    sealed = seal_request(
        pinned.hpke_key, json.dumps(doc).encode(), aad=request_aad("POST", "/api/chat")
    )
    response = http.post(
        f"{served.url}/v1/chat/completions", content=sealed.ciphertext, headers=sealed.headers()
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "hpke_open_failed"


def test_a_tampered_answer_record_is_detected(served: ServeProcess, pinned: PinnedKeys) -> None:
    doc = {"model": MODEL, "prompt": "Hello", "options": {"num_predict": 6}}
    sealed = seal_request(
        pinned.hpke_key, json.dumps(doc).encode(), aad=request_aad("POST", "/api/generate")
    )
    response = http.post(
        f"{served.url}/api/generate", content=sealed.ciphertext, headers=sealed.headers()
    )
    assert response.status_code == 200
    wire = bytearray(response.content)
    wire[30] ^= 1  # inside the first record
    opener: ResponseOpener = sealed.opener()
    with pytest.raises(CryptoError) as caught:
        opener.feed(bytes(wire))
    assert caught.value.code == "response_chunk_invalid"
    opener = sealed.opener()
    opener.feed(response.content[:-1])
    with pytest.raises(CryptoError) as caught:
        opener.close()
    assert caught.value.code == "response_truncated"
