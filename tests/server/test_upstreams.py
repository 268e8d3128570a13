"""The upstream engines against real running servers: a second ``cllm serve`` (embedded engine)
stands in for an OpenAI-compatible engine and for Ollama. With greedy sampling the front must
pass the upstream's answer through unchanged."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from cllm.engine import default_model_path
from serving import MODEL, ServeProcess, http, start_serve, ui_events

PROMPT = [{"role": "user", "content": "Describe a lighthouse in two sentences."}]


@pytest.fixture(scope="module")
def front_openai(
    served: ServeProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("front-openai")
    args = [
        "--engine",
        "openai",
        "--upstream",
        f"{served.url}/v1",
        "--model",
        MODEL,
        "--model-path",
        str(default_model_path()),
        "--measure",
        str(Path(__file__)),
    ]
    front = start_serve(args, state_dir=root / "state", log_path=root / "serve.log")
    yield front
    front.stop()


def _ollama_store(root: Path, name: str) -> Path:
    """An Ollama model store holding the GGUF as its one model layer."""
    gguf = default_model_path()
    blob = hashlib.sha256(gguf.read_bytes()).hexdigest()
    config = json.dumps({"model_format": "gguf", "model_family": "llama"}).encode()
    config_digest = hashlib.sha256(config).hexdigest()
    (root / "blobs").mkdir(parents=True)
    shutil.copyfile(gguf, root / "blobs" / f"sha256-{blob}")
    (root / "blobs" / f"sha256-{config_digest}").write_bytes(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": f"sha256:{config_digest}",
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.ollama.image.model",
                "digest": f"sha256:{blob}",
                "size": gguf.stat().st_size,
            }
        ],
    }
    path = root / "manifests" / "registry.ollama.ai" / "library" / name / "latest"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def front_ollama(
    served: ServeProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("front-ollama")
    store = _ollama_store(root / "models", MODEL)
    args = [
        "--engine",
        "ollama",
        "--upstream",
        served.url,
        "--model",
        MODEL,
        "--ollama-models",
        str(store),
        "--measure",
        str(Path(__file__)),
    ]
    front = start_serve(args, state_dir=root / "state", log_path=root / "serve.log")
    yield front
    front.stop()


def _openai_answer(url: str, *, stream: bool) -> str:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    request = {"model": MODEL, "messages": PROMPT, "max_tokens": 24, "temperature": 0, "seed": 1}
    if stream:
        chunks = client.chat.completions.create(**request, stream=True)  # type: ignore[call-overload]
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    answer = client.chat.completions.create(**request)  # type: ignore[call-overload]
    return str(answer.choices[0].message.content)


@pytest.mark.parametrize("stream", [False, True])
def test_openai_upstream_passes_the_answer_through(
    served: ServeProcess, front_openai: ServeProcess, stream: bool
) -> None:
    direct = _openai_answer(served.url, stream=False)
    assert direct
    assert _openai_answer(front_openai.url, stream=stream) == direct


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_upstream_passes_the_answer_through(
    served: ServeProcess, front_ollama: ServeProcess, stream: bool
) -> None:
    options = {"num_predict": 24, "temperature": 0, "seed": 1}
    direct = ollama.Client(host=served.url).chat(model=MODEL, messages=PROMPT, options=options)
    front = ollama.Client(host=front_ollama.url)
    if stream:
        parts = front.chat(model=f"{MODEL}:latest", messages=PROMPT, options=options, stream=True)
        text = "".join(p.message.content or "" for p in parts)
    else:
        text = front.chat(model=f"{MODEL}:latest", messages=PROMPT, options=options).message.content
    assert text == direct.message.content


PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
JSON_ASK = [{"role": "user", "content": "Give a person's name and age as JSON."}]


def test_formats_options_and_refusals_pass_through_upstreams(
    front_openai: ServeProcess, front_ollama: ServeProcess
) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    request = {"model": MODEL, "messages": JSON_ASK, "max_tokens": 60, "temperature": 0}
    request |= {"response_format": schema, "top_k": 10, "frequency_penalty": 0.1}
    answer = http.post(f"{front_openai.url}/v1/chat/completions", json=request).json()
    person = json.loads(answer["choices"][0]["message"]["content"])
    assert isinstance(person["name"], str) and isinstance(person["age"], int)
    options = {"num_predict": 60, "temperature": 0, "top_k": 10, "num_ctx": 2048}
    chat = ollama.Client(host=front_ollama.url).chat(
        model=MODEL, messages=JSON_ASK, format=PERSON, options=options
    )
    person = json.loads(chat.message.content or "")
    assert isinstance(person["name"], str) and isinstance(person["age"], int)
    # The upstream's own description of its model comes through /api/show.
    shown = ollama.Client(host=front_ollama.url).show(MODEL)
    assert shown.template and "<|im_start|>" in shown.template
    assert shown.capabilities == ["completion"]  # the upstream's model takes no tools
    assert shown.modelinfo and shown.modelinfo["llama.context_length"] == 4096
    # The upstream's measured durations come through.
    assert chat.eval_duration and chat.prompt_eval_duration and chat.total_duration
    # What the upstream refuses (SmolLM2 has no tools) is a 400 here too, with its reason.
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    refused = http.post(f"{front_openai.url}/v1/chat/completions", json=request | {"tools": tools})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "upstream_refused"
    assert "does not support tools" in refused.json()["error"]["message"]
    # num_ctx means nothing to an OpenAI-compatible upstream: refused, not dropped.
    body = {"model": MODEL, "messages": JSON_ASK, "options": {"num_ctx": 512}, "stream": False}
    assert http.post(f"{front_openai.url}/api/chat", json=body).status_code == 400


def test_front_measures_what_it_was_told(
    front_openai: ServeProcess, front_ollama: ServeProcess
) -> None:
    for front, model_method in ((front_openai, "file"), (front_ollama, "ollama_model")):
        nonce = "ab" * 32
        evidence = http.get(f"{front.url}/v1/attestation/report", params={"nonce": nonce}).json()
        events = {e["type"]: e for e in evidence["event_log"]}
        expected = {
            "cllm.start",  # each start is marked (issue 12)
            "cllm.package",
            "cllm.engine",
            "cllm.model",
            *ui_events(),
            "cllm.config",
        }
        assert set(events) == expected
        assert events["cllm.model"]["details"]["method"] == model_method
        assert events["cllm.engine"]["details"]["method"] == "file"


def test_an_upstream_that_dies_mid_stream_ends_the_stream_with_an_error(
    tmp_path: Path,
) -> None:
    upstream = start_serve([], state_dir=tmp_path / "up", log_path=tmp_path / "up.log")
    front = start_serve(
        [
            "--engine",
            "openai",
            "--upstream",
            upstream.url,
            "--model",
            MODEL,
            "--measure",
            str(Path(__file__)),
        ],
        state_dir=tmp_path / "front",
        log_path=tmp_path / "front.log",
    )
    try:
        request = {
            "model": MODEL,
            "messages": PROMPT,
            "max_tokens": 2000,
            "temperature": 1.0,
            "stream": True,
        }
        events: list[str] = []
        with httpx.stream(
            "POST", f"{front.url}/v1/chat/completions", json=request, timeout=60
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                    if len(events) == 5:
                        upstream.kill()
        assert len(events) >= 5
        last = json.loads(events[-1])
        assert last["error"]["code"] == "upstream_unavailable"
        assert events[-1] != "[DONE]"
        # The front stays up and says its engine is gone.
        health = http.get(f"{front.url}/healthz", timeout=10)
        assert health.status_code == 503
        assert health.json()["status"] == "engine_unavailable"
    finally:
        front.stop()
        upstream.stop()
