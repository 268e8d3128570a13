"""The engine queue through a real server: beyond ``--max-queue`` waiting requests, 429 with
``Retry-After`` in each API's shape; a waiting client that hangs up gives its place back."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from serving import MODEL, ServeProcess, http, start_serve

STORY = [{"role": "user", "content": "Tell me a very long story about the sea."}]


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("narrow")
    server = start_serve(
        ["--max-queue", "1"], state_dir=root / "state", log_path=root / "serve.log"
    )
    yield server
    server.stop()


def test_full_queue_is_429_and_a_client_that_leaves_frees_its_place(narrow: ServeProcess) -> None:
    url = narrow.url
    # A grammar that cannot end before 1000 numbers: the model cannot stop early.
    endless = {"type": "array", "items": {"type": "integer"}, "minItems": 1000}
    long = {
        "model": MODEL,
        "messages": STORY,
        "max_tokens": 4000,
        "stream": True,
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": endless}},
    }
    with (
        httpx.Client(timeout=120) as holder,
        holder.stream("POST", f"{url}/v1/chat/completions", json=long) as running,
    ):
        assert running.status_code == 200
        chunks = running.iter_raw()  # kept: a dropped iterator closes the connection
        next(chunks)  # the engine is generating for this one

        # A second waits (the queue's one place), then its client gives up.
        def impatient() -> None:
            with contextlib.suppress(httpx.TimeoutException):
                http.post(
                    f"{url}/v1/chat/completions",
                    json={"model": MODEL, "messages": STORY, "max_tokens": 4},
                    timeout=3,
                )

        waiter = threading.Thread(target=impatient)
        waiter.start()
        time.sleep(1)
        small = {"model": MODEL, "messages": STORY, "max_tokens": 4}
        busy = http.post(f"{url}/v1/chat/completions", json=small)
        assert busy.status_code == 429
        assert int(busy.headers["retry-after"]) >= 1
        assert busy.json()["error"]["code"] == "engine_busy"
        ollama = http.post(
            f"{url}/api/chat",
            json={"model": MODEL, "messages": STORY, "options": {"num_predict": 4}},
        )
        assert ollama.status_code == 429
        assert int(ollama.headers["retry-after"]) >= 1
        assert "busy" in ollama.json()["error"]
        waiter.join()
        time.sleep(0.5)

        # The waiter left: its place is free, so the next one queues instead of a 429.
        answer: list[httpx.Response] = []
        queued = threading.Thread(
            target=lambda: answer.append(http.post(f"{url}/v1/chat/completions", json=small))
        )
        queued.start()
        time.sleep(1)
        assert not answer  # still waiting behind the long answer, not refused
        chunks.close()
    # The long answer's client hung up: the engine moves on to the queued one.
    queued.join(timeout=60)
    assert answer and answer[0].status_code == 200
    assert answer[0].json()["usage"]["completion_tokens"] <= 4
    assert "Traceback" not in narrow.log()
