"""The routes real clients look for: Ollama's ``/api/show`` and ``/api/ps``, model names with
and without ``:latest``, Ollama's measured durations, API-shaped 404/405 for everything else
under ``/v1/`` and ``/api/``, and CORS (off unless configured)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from serving import MODEL, ServeProcess, http, start_serve

CHAT = {"messages": [{"role": "user", "content": "Hi"}]}


def test_show_is_shaped_as_ollamas(served: ServeProcess) -> None:
    response = http.post(f"{served.url}/api/show", json={"model": MODEL})
    assert response.status_code == 200
    doc = response.json()
    assert doc["details"]["format"] == "gguf"
    assert doc["details"]["family"] == "llama"
    assert doc["details"]["quantization_level"] == "Q4_1"
    assert doc["details"]["parameter_size"] == "135M"
    assert doc["model_info"]["general.architecture"] == "llama"
    assert doc["model_info"]["llama.context_length"] == 4096  # what the server gives a request
    assert doc["model_info"]["general.parameter_count"] > 100_000_000
    assert "<|im_start|>" in doc["template"]
    assert doc["capabilities"] == ["completion"]  # SmolLM2's template shows no tools
    assert "num_ctx 4096" in doc["parameters"]
    # Older clients send "name"; ":latest" is the same model.
    again = http.post(f"{served.url}/api/show", json={"name": f"{MODEL}:latest"})
    assert again.json() == doc


def test_show_of_another_model_is_an_ollama_404(served: ServeProcess) -> None:
    response = http.post(f"{served.url}/api/show", json={"model": "llama3"})
    assert response.status_code == 404
    assert "not found" in response.json()["error"]
    assert http.post(f"{served.url}/api/show", json={"model": f"{MODEL}:7b"}).status_code == 404


def test_ps_lists_the_loaded_model(served: ServeProcess) -> None:
    doc = http.get(f"{served.url}/api/ps").json()
    [loaded] = doc["models"]
    assert loaded["name"] == f"{MODEL}:latest"
    assert loaded["digest"].startswith("sha384:")
    assert loaded["size"] > 50_000_000
    assert loaded["context_length"] == 4096
    assert loaded["expires_at"]


@pytest.mark.parametrize("name", [MODEL, f"{MODEL}:latest"])
def test_name_and_name_latest_are_the_same_model_on_both_apis(
    served: ServeProcess, name: str
) -> None:
    openai = http.post(
        f"{served.url}/v1/chat/completions", json={"model": name, "max_tokens": 2, **CHAT}
    )
    assert openai.status_code == 200
    assert openai.json()["model"] == name
    ollama = http.post(
        f"{served.url}/api/chat",
        json={"model": name, "stream": False, "options": {"num_predict": 2}, **CHAT},
    )
    assert ollama.status_code == 200
    assert http.get(f"{served.url}/v1/models/{name}").json()["id"] == MODEL
    other = http.post(f"{served.url}/v1/chat/completions", json={"model": f"{MODEL}:q8", **CHAT})
    assert other.status_code == 404


def test_ollama_final_records_carry_measured_durations(served: ServeProcess) -> None:
    body = {"model": MODEL, "stream": False, "options": {"num_predict": 6, "temperature": 0}}
    doc = http.post(f"{served.url}/api/chat", json=body | CHAT).json()
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(doc[key], int) and doc[key] >= 0, key
    assert doc["prompt_eval_duration"] > 0 and doc["eval_duration"] > 0
    assert doc["eval_count"] == 6 and doc["prompt_eval_count"] > 0
    parts = doc["load_duration"] + doc["prompt_eval_duration"] + doc["eval_duration"]
    assert parts <= doc["total_duration"]
    # Streamed: the done line carries them too.
    lines = http.post(f"{served.url}/api/generate", json=body | {"prompt": "Hi", "stream": True})
    last = json.loads(lines.text.splitlines()[-1])
    assert last["done"] and last["eval_count"] == 6
    assert 0 < last["eval_duration"] < last["total_duration"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/v1/completions", 404),
        ("POST", "/v1/responses", 404),
        ("POST", "/v1/embeddings", 404),
        ("GET", "/v1/nothing", 404),
        ("GET", "/v1/chat/completions", 405),
        ("DELETE", "/v1/models", 405),
    ],
)
def test_unknown_openai_routes_answer_in_openais_shape(
    served: ServeProcess, method: str, path: str, status: int
) -> None:
    response = http.request(method, f"{served.url}{path}", json={})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == ("not_found" if status == 404 else "method_not_allowed")
    assert error["message"]
    if status == 405:
        assert response.headers["allow"]
    if path == "/v1/embeddings":
        assert "no embeddings" in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/api/embed", 404),
        ("POST", "/api/embeddings", 404),
        ("POST", "/api/pull", 404),
        ("DELETE", "/api/delete", 404),
        ("GET", "/api/chat", 405),
        ("POST", "/api/tags", 405),
        ("GET", "/api/show", 405),
    ],
)
def test_unknown_ollama_routes_answer_in_ollamas_shape(
    served: ServeProcess, method: str, path: str, status: int
) -> None:
    response = http.request(method, f"{served.url}{path}", json={})
    assert response.status_code == status
    doc = response.json()
    assert isinstance(doc["error"], str) and doc["error"]


def test_the_ui_still_serves_its_own_paths(served: ServeProcess) -> None:
    response = http.get(f"{served.url}/")
    if "cllm.ui" not in served.log():
        pytest.skip("the UI is not built in this checkout (ui/ builds it)")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]


def test_cors_is_off_by_default(served: ServeProcess) -> None:
    origin = {"Origin": "https://evil.example"}
    response = http.get(f"{served.url}/v1/models", headers=origin)
    assert "access-control-allow-origin" not in response.headers
    preflight = http.request(
        "OPTIONS",
        f"{served.url}/v1/chat/completions",
        headers=origin | {"Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


@pytest.fixture(scope="module")
def cors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("cors")
    server = start_serve(
        ["--cors-origin", "https://chat.example.com", "--api-key", "k"],
        state_dir=root / "state",
        log_path=root / "serve.log",
    )
    yield server
    server.stop()


def test_cors_allows_exactly_the_configured_origins(cors: ServeProcess) -> None:
    allowed = {"Origin": "https://chat.example.com"}
    preflight = http.request(
        "OPTIONS",
        f"{cors.url}/v1/chat/completions",
        headers=allowed
        | {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    # The preflight carries no API key and still succeeds: CORS sits outside the key check.
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://chat.example.com"
    models = http.get(f"{cors.url}/v1/models", headers=allowed | {"Authorization": "Bearer k"})
    assert models.headers["access-control-allow-origin"] == "https://chat.example.com"
    other = http.get(
        f"{cors.url}/v1/models",
        headers={"Origin": "https://evil.example", "Authorization": "Bearer k"},
    )
    assert "access-control-allow-origin" not in other.headers
