"""The Ollama-compatible API, driven by the official ``ollama`` client."""

from __future__ import annotations

import ollama
import pytest

from cllm.client import PinnedKeys
from cllm.crypto import verify_answer
from serving import MODEL, ServeProcess, http

OPTIONS = {"num_predict": 12, "temperature": 0, "seed": 5}

# cllm serve takes only the content type it parses (a text/plain POST is 415).
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(served: ServeProcess) -> ollama.Client:
    return ollama.Client(host=served.url)


def test_tags_and_version(client: ollama.Client) -> None:
    models = client.list().models
    assert [m.model for m in models] == [f"{MODEL}:latest"]
    assert models[0].size and models[0].size > 50_000_000
    assert models[0].digest and models[0].digest.startswith("sha384:")
    version = http.get(f"{client._client.base_url}/api/version").json()["version"]
    assert version


def test_chat_streaming_matches_the_whole_answer(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "What is the sky's colour?"}]
    whole = client.chat(model=MODEL, messages=messages, options=OPTIONS, stream=False)
    assert whole.done
    assert whole.message.content
    parts = list(client.chat(model=MODEL, messages=messages, options=OPTIONS, stream=True))
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert parts[-1].done
    assert [p.done for p in parts[:-1]] == [False] * (len(parts) - 1)
    assert parts[-1].eval_count == whole.eval_count


def test_generate(client: ollama.Client) -> None:
    whole = client.generate(model=MODEL, prompt="Count to three.", options=OPTIONS)
    parts = list(
        client.generate(model=MODEL, prompt="Count to three.", options=OPTIONS, stream=True)
    )
    assert whole.response
    assert "".join(p.response or "" for p in parts) == whole.response
    assert parts[-1].done


def test_unknown_model_is_an_ollama_error(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="llama3", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404
    assert "not found" in caught.value.error


def test_malformed_json_is_400(served: ServeProcess) -> None:
    response = http.post(f"{served.url}/api/chat", content=b"{nope", headers=JSON)
    assert response.status_code == 400
    assert response.json() == {"error": "the request body is not valid JSON"}


def test_ndjson_answers_are_signed(served: ServeProcess, pinned: PinnedKeys) -> None:
    request = b'{"model": "%s", "prompt": "Hi", "options": {"num_predict": 3}}' % MODEL.encode()
    response = http.post(f"{served.url}/api/generate", content=request, headers=JSON)
    assert response.status_code == 200
    assert response.content.endswith(b"}\n")
    verify_answer(response.content, request_body=request, signing_key=pinned.signing_key)
