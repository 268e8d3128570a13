"""A server under abuse: clients that hang up, oversized and malformed bodies, bursts, report
floods, missing API keys; and what it logs (never a prompt or an answer)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from cllm.client import PinnedKeys, apost
from cllm.evidence import parse_evidence
from serving import MODEL, ServeProcess, http, start_serve

API_KEY = "test-" + secrets.token_hex(8)
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MARKER = "PROMPT-MARKER-" + secrets.token_hex(6)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("guarded")
    server = start_serve(
        # Room for the whole burst below in the engine's line (beyond it: 429, test_queue.py).
        ["--api-key", API_KEY, "--max-queue", "64"],
        state_dir=root / "state",
        log_path=root / "serve.log",
        env={
            "CLLM_SERVE_MAX_BODY_BYTES": "65536",
            # One attestation pending per client, refused at once beyond, and quotes slow
            # enough that a burst from one client overlaps.
            "CLLM_SERVE_ATTEST_CLIENT_PENDING": "1",
            "CLLM_SERVE_ATTEST_SHARE_WAIT_MS": "0",
            "CLLM_SIM_QUOTE_MS": "300",
        },
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def answers() -> list[str]:
    """Answer texts produced in this module, for the log check at the end."""
    return []


def _chat(
    max_tokens: int, *, content: str = "Tell me a long story about the sea.", stream: bool = False
) -> dict[str, object]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "options": {"num_predict": max_tokens},  # the same limit for the Ollama routes
        "stream": stream,
    }


@pytest.mark.parametrize("path", ["/v1/models", "/v1/chat/completions", "/api/tags", "/api/chat"])
def test_inference_routes_need_the_api_key(guarded: ServeProcess, path: str) -> None:
    method = "GET" if path in {"/v1/models", "/api/tags"} else "POST"
    response = http.request(method, f"{guarded.url}{path}", json=_chat(2))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    wrong = http.request(
        method, f"{guarded.url}{path}", json=_chat(2), headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    right = http.request(method, f"{guarded.url}{path}", json=_chat(2), headers=AUTH)
    assert right.status_code == 200


def test_health_and_attestation_stay_open(guarded: ServeProcess) -> None:
    health = http.get(f"{guarded.url}/healthz")
    assert health.status_code == 200
    assert health.json()["api_key_required"] is True


def test_openai_client_with_api_key(guarded: ServeProcess, answers: list[str]) -> None:
    client = openai.OpenAI(base_url=f"{guarded.url}/v1", api_key=API_KEY, max_retries=0)
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"{MARKER} Describe a forest."}],
        max_tokens=30,
    )
    assert reply.choices[0].message.content
    answers.append(reply.choices[0].message.content)


def test_a_client_that_hangs_up_frees_the_engine_at_once(guarded: ServeProcess) -> None:
    # 4000 tokens take about a minute on one thread: if the abandoned generation kept the
    # engine, the next request would wait for it.
    with httpx.stream(
        "POST",
        f"{guarded.url}/v1/chat/completions",
        json=_chat(4000, stream=True),
        headers=AUTH,
        timeout=120,
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
    started = time.monotonic()
    reply = http.post(f"{guarded.url}/v1/chat/completions", json=_chat(3), headers=AUTH, timeout=60)
    assert reply.status_code == 200
    assert time.monotonic() - started < 30
    deadline = time.monotonic() + 10
    while "generation cancelled" not in guarded.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "generation cancelled" in guarded.log()


@pytest.mark.parametrize(
    ("path", "shape"), [("/v1/chat/completions", "openai"), ("/api/chat", "ollama")]
)
def test_bodies_over_the_limit_are_413(guarded: ServeProcess, path: str, shape: str) -> None:
    big = _chat(2, content="x" * 70_000)
    response = http.post(f"{guarded.url}{path}", json=big, headers=AUTH)
    assert response.status_code == 413
    error = response.json()["error"]
    if shape == "openai":
        assert error["code"] == "body_too_large"
    else:
        assert "65536" in error

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit must hold while reading
        yield json.dumps(big).encode()

    response = http.post(
        f"{guarded.url}{path}",
        content=chunked(),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_a_burst_of_64_concurrent_chats_completes_without_errors(
    guarded: ServeProcess, answers: list[str]
) -> None:
    nonce = secrets.token_bytes(32)
    evidence = parse_evidence(
        http.get(f"{guarded.url}/v1/attestation/report", params={"nonce": nonce.hex()}).content
    )
    keys = PinnedKeys.from_binding(evidence.binding)

    async def one(i: int, client: httpx.AsyncClient) -> int:
        doc = _chat(6, content=f"{MARKER} request {i}: say a word.", stream=i % 2 == 0)
        path = "/v1/chat/completions" if i % 3 else "/api/chat"
        if path == "/api/chat":
            doc = {
                "model": MODEL,
                "messages": doc["messages"],
                "stream": doc["stream"],
                "options": {"num_predict": 6},
            }
        answer = await apost(client, path, doc, keys=keys, encrypt=i % 4 == 0, headers=AUTH)
        assert answer.signed is not None  # every answer is signed, encrypted or not
        return answer.status_code

    async def burst() -> list[int]:
        # One engine thread serves them in turn: the last waits for all others, so the
        # timeout is about errors, not speed (a busy CI machine is slow, not wrong).
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=guarded.url, timeout=600, limits=limits) as client:
            return await asyncio.gather(*(one(i, client) for i in range(64)))

    assert asyncio.run(burst()) == [200] * 64


def test_attestation_reports_are_rate_limited(guarded: ServeProcess) -> None:
    """One client over its share of pending attestations is told 429, with Retry-After."""

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=guarded.url, timeout=600) as client:
            return await asyncio.gather(
                *(
                    client.get("/v1/attestation/report", params={"nonce": secrets.token_hex(32)})
                    for _ in range(6)
                )
            )

    codes = asyncio.run(burst())
    assert any(r.status_code == 200 for r in codes)
    limited = [r for r in codes if r.status_code == 429]
    assert limited
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["error"]["code"] == "rate_limited"


def test_logs_carry_no_prompt_and_no_answer(guarded: ServeProcess, answers: list[str]) -> None:
    log = guarded.log()
    assert "POST /v1/chat/completions -> 200" in log  # it does log requests...
    assert MARKER not in log  # ...but never what was in them
    assert "forest" not in log
    assert answers
    for answer in answers:
        assert answer.strip() not in log
