"""Every chat request field is honoured or refused with 400 naming it, on both APIs; JSON output
is constrained by a grammar; requests without a length cap get the server's default."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from serving import MODEL, ServeProcess, http, start_serve

USER = [{"role": "user", "content": "Hi"}]
OPENAI = {"model": MODEL, "messages": USER, "max_tokens": 4}
OLLAMA = {"model": MODEL, "messages": USER, "stream": False, "options": {"num_predict": 4}}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


@pytest.mark.parametrize(
    ("extra", "field", "code"),
    [
        ({"logprobs": True}, "logprobs", "unsupported_field"),
        ({"top_logprobs": 3}, "top_logprobs", "unsupported_field"),
        ({"logit_bias": {"50256": -100}}, "logit_bias", "unsupported_field"),
        ({"store": True}, "store", "unsupported_field"),
        ({"modalities": ["text", "audio"]}, "modalities", "unsupported_field"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio", "unsupported_field"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction", "unsupported_field"),
        ({"reasoning_effort": "high"}, "reasoning_effort", "unsupported_field"),
        ({"web_search_options": {}}, "web_search_options", "unsupported_field"),
        ({"service_tier": "priority"}, "service_tier", "unsupported_field"),
        ({"tools": [WEATHER]}, "tools", "tools_unsupported"),
        ({"functions": [WEATHER["function"]]}, "tools", "tools_unsupported"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
            "unsupported_field",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "?"}, IMAGE]}]},
            "messages.0.content.1",
            "vision_unsupported",
        ),
        (
            {
                "messages": [
                    *USER,
                    {"role": "assistant", "tool_calls": [{"id": "c1", **WEATHER_CALL}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                ]
            },
            "messages",
            "tools_unsupported",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema",
            "unsupported_field",
        ),
    ],
)
def test_openai_fields_refused_name_the_field(
    served: ServeProcess, extra: dict[str, Any], field: str, code: str
) -> None:
    response = http.post(f"{served.url}/v1/chat/completions", json=OPENAI | extra)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["param"] == field
    assert error["message"].startswith(field)
    assert error["type"] == "invalid_request_error"
    if code == "vision_unsupported":
        assert "no vision" in error["message"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"think": True}, "think"),
        ({"logprobs": True}, "logprobs"),
        ({"tools": [WEATHER]}, "tools"),
        ({"format": "yaml"}, "format"),
        ({"options": {"num_gpu": 1}}, "options.num_gpu"),
        ({"options": {"num_thread": 4}}, "options.num_thread"),
        ({"options": {"repeat_last_n": 128}}, "options.repeat_last_n"),
        ({"options": {"tfs_z": 0.9}}, "options.tfs_z"),
        ({"options": {"penalize_newline": True}}, "options.penalize_newline"),
        ({"options": {"num_ctx": 1_000_000}}, "options.num_ctx"),
        (
            {"messages": [{"role": "user", "content": "?", "images": ["iVBORw0KGgo="]}]},
            "messages.0.images",
        ),
        (
            {"messages": [*USER, {"role": "tool", "content": "sunny", "tool_name": "w"}]},
            "messages",
        ),
    ],
)
def test_ollama_chat_fields_refused_name_the_field(
    served: ServeProcess, extra: dict[str, Any], field: str
) -> None:
    response = http.post(f"{served.url}/api/chat", json=OLLAMA | extra)
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert message.startswith(f"{field}:")
    if field == "messages.0.images":
        assert "no vision" in message
    if field == "tools":
        assert "does not support tools" in message


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"raw": True}, "raw"),
        ({"suffix": "}"}, "suffix"),
        ({"images": ["iVBORw0KGgo="]}, "images"),
        ({"template": "{{ .Prompt }}"}, "template"),
        ({"context": [1, 2, 3]}, "context"),
    ],
)
def test_ollama_generate_fields_refused_name_the_field(
    served: ServeProcess, extra: dict[str, Any], field: str
) -> None:
    body = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}
    response = http.post(f"{served.url}/api/generate", json=body | extra)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{field}:")


def test_neutral_values_and_mapped_options_are_accepted(served: ServeProcess) -> None:
    openai = OPENAI | {
        "logprobs": False,
        "store": False,
        "n": 1,
        "modalities": ["text"],
        "tool_choice": "none",
        "tools": [WEATHER],  # "none": no tool is shown to the model, so none is needed
        "parallel_tool_calls": True,
        "user": "someone",
        "metadata": {"k": "v"},
        "frequency_penalty": 0.5,
        "presence_penalty": 0.5,
        "top_k": 20,
        "min_p": 0.1,
        "repeat_penalty": 1.1,
        "response_format": {"type": "text"},
        "stream_options": {"include_usage": True},
        "seed": 3,
        "stop": ["\n\n"],
    }
    response = http.post(f"{served.url}/v1/chat/completions", json=openai)
    assert response.status_code == 200, response.text
    options = {
        "num_predict": 4,
        "num_ctx": 2048,
        "top_k": 20,
        "min_p": 0.1,
        "typical_p": 0.9,
        "repeat_penalty": 1.1,
        "presence_penalty": 0.2,
        "frequency_penalty": 0.2,
        "mirostat": 0,
        "seed": 1,
        "stop": ["\n\n"],
        "repeat_last_n": 64,
    }
    ollama = OLLAMA | {"options": options, "keep_alive": "5m", "think": False, "format": ""}
    response = http.post(f"{served.url}/api/chat", json=ollama)
    assert response.status_code == 200, response.text


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def _person(doc: object) -> None:
    assert isinstance(doc, dict)
    assert isinstance(doc["name"], str)
    assert isinstance(doc["age"], int)


PROMPT = [{"role": "user", "content": "Give a person's name and age as JSON."}]


def test_openai_json_modes_produce_json(served: ServeProcess) -> None:
    body = {"model": MODEL, "messages": PROMPT, "max_tokens": 60, "temperature": 0}
    mode = http.post(
        f"{served.url}/v1/chat/completions",
        json=body | {"response_format": {"type": "json_object"}},
    ).json()
    assert isinstance(json.loads(mode["choices"][0]["message"]["content"]), dict)
    schema = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    answer = http.post(
        f"{served.url}/v1/chat/completions", json=body | {"response_format": schema}
    ).json()
    _person(json.loads(answer["choices"][0]["message"]["content"]))


def test_ollama_formats_produce_json(served: ServeProcess) -> None:
    body = {"model": MODEL, "messages": PROMPT, "stream": False}
    body |= {"options": {"num_predict": 60, "temperature": 0}}
    plain = http.post(f"{served.url}/api/chat", json=body | {"format": "json"}).json()
    assert isinstance(json.loads(plain["message"]["content"]), dict)
    shaped = http.post(f"{served.url}/api/chat", json=body | {"format": SCHEMA}).json()
    _person(json.loads(shaped["message"]["content"]))


def test_a_schema_that_makes_no_grammar_is_refused(served: ServeProcess) -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}
    response = http.post(
        f"{served.url}/v1/chat/completions", json=OPENAI | {"response_format": bad}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "response_format"


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("capped")
    server = start_serve(
        ["--default-max-tokens", "5"], state_dir=root / "state", log_path=root / "serve.log"
    )
    yield server
    server.stop()


def test_requests_without_a_cap_get_the_default(capped: ServeProcess) -> None:
    story = [{"role": "user", "content": "Tell me a long story about the sea."}]
    openai = http.post(
        f"{capped.url}/v1/chat/completions", json={"model": MODEL, "messages": story}
    )
    assert openai.json()["usage"]["completion_tokens"] == 5
    assert openai.json()["choices"][0]["finish_reason"] == "length"
    # Ollama's "no limit" (-1) is the default cap too; a request's own cap still wins.
    body = {"model": MODEL, "messages": story, "stream": False}
    ollama = http.post(f"{capped.url}/api/chat", json=body | {"options": {"num_predict": -1}})
    assert ollama.json()["eval_count"] == 5
    own = http.post(f"{capped.url}/api/chat", json=body | {"options": {"num_predict": 7}})
    assert own.json()["eval_count"] == 7
    show = http.post(f"{capped.url}/api/show", json={"model": MODEL}).json()
    assert "num_predict 5" in show["parameters"]
