"""The OpenAI-compatible API, driven by the official ``openai`` client."""

from __future__ import annotations

import openai
import pytest

from cllm.client import PinnedKeys
from cllm.crypto import verify_answer
from serving import MODEL, ServeProcess, http

# cllm serve takes only the content type it parses (a text/plain POST is 415).
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(served: ServeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [MODEL]


def test_chat_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=12,
        temperature=0,
        seed=7,
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in {"stop", "length"}
    assert completion.usage is not None
    assert 0 < completion.usage.completion_tokens <= 12
    assert completion.usage.total_tokens > completion.usage.completion_tokens


def test_streaming_matches_the_whole_answer(client: openai.OpenAI) -> None:
    request = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": 16,
        "temperature": 0,
        "seed": 3,
    }
    whole = client.chat.completions.create(**request)  # type: ignore[call-overload]
    chunks = list(
        client.chat.completions.create(  # type: ignore[call-overload]
            **request, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == [whole.choices[0].finish_reason]


def test_unknown_model_is_404_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="gpt-4", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_request"),
        (b'{"model": "m"}', "invalid_request"),
        (b'{"model": "m", "messages": []}', "invalid_request"),
        (b'{"model": "m", "messages": [{"role": "robot", "content": "x"}]}', "invalid_request"),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}',
            "invalid_request",
        ),
        (b"[]", "invalid_request"),
    ],
)
def test_malformed_requests_are_400_in_openai_shape(
    served: ServeProcess, body: bytes, code: str
) -> None:
    response = http.post(
        f"{served.url}/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "invalid_request_error"
    assert error["message"]


def test_every_answer_is_signed_by_the_attested_key(
    served: ServeProcess, pinned: PinnedKeys
) -> None:
    body = (
        b'{"model": "%s", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}'
        % MODEL.encode()
    )
    for extra in (
        b"",
        b', "stream": true',
        b', "stream": true, "stream_options": {"include_usage": true}',
    ):
        request = body[:-1] + extra + b"}"
        response = http.post(f"{served.url}/v1/chat/completions", content=request, headers=JSON)
        assert response.status_code == 200
        signed = verify_answer(
            response.content, request_body=request, signing_key=pinned.signing_key
        )
        assert signed.answer == response.content[: len(signed.answer)]
