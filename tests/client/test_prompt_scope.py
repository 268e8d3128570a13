"""Prompts stay inside (issue 12), round trip: a ``cllm serve`` whose OpenAI upstream is a
recording server on loopback that the server is told (by an injected address classification)
is a remote host. Nothing leaves this machine; the verdict, the SDK and the prompt's actual
path all agree on where prompts go."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from cllm.client import Client, LocalVerifier
from cllm.errors import AttestationError
from cllm.policy import parse_policy
from cllm.server import ServeSettings, build_runtime, create_app
from cllm.tee import load_simulated_world


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serving(app: Any) -> Iterator[str]:
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _recording_upstream(seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "m", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        seen.append(await request.json())

        def events() -> Iterator[str]:
            for chunk in (
                {"choices": [{"index": 0, "delta": {"content": "recorded"}}]},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
            ):
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture
def forwarding_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    engine = tmp_path / "engine.bin"
    engine.write_bytes(b"the upstream engine's files")
    with _serving(_recording_upstream(seen)) as upstream:
        settings = ServeSettings(
            state_dir=tmp_path / "state",
            tee="simulated",
            engine="openai",
            upstream=upstream,
            model="m",
            measure=(engine,),
            allow_remote_upstream=True,
        )
        runtime, _ = build_runtime(
            settings, argv=["cllm", "serve"], clock=time.time, is_loopback=lambda _: False
        )
        root = load_simulated_world(tmp_path / "state", clock=time.time).root_ca_path
        with _serving(create_app(runtime)) as url:
            yield url, root, seen


PROMPT = "my secret medical question"


def test_the_default_policy_refuses_a_server_that_forwards_prompts(
    forwarding_server: tuple[str, Path, list[dict[str, Any]]],
) -> None:
    url, root, seen = forwarding_server
    with Client(url, verifier=LocalVerifier(trust_simulated_root=root)) as client:
        result = client.verify()
        assert result.status == "contraindicated"
        assert [r.code for r in result.reasons] == ["upstream_not_local", "no_reference_values"]
        assert result.upstream == {"scope": "remote", "host": "127.0.0.1"}
        with pytest.raises(AttestationError):
            client.chat.completions.create(messages=[{"role": "user", "content": PROMPT}])
    assert seen == []  # refused before anything was sent


def test_a_policy_that_allows_the_host_lets_prompts_go_there_visibly(
    forwarding_server: tuple[str, Path, list[dict[str, Any]]],
) -> None:
    url, root, seen = forwarding_server
    policy = parse_policy('[upstream]\nallow_remote_hosts = ["127.0.0.1"]\n', policy_id="fwd")
    verifier = LocalVerifier(policy=policy, trust_simulated_root=root)
    with Client(url, verifier=verifier) as client:
        result = client.verify()
        assert result.status == "warning"
        assert [r.code for r in result.reasons] == ["no_reference_values", "simulated_evidence"]
        assert result.upstream == {"scope": "remote", "host": "127.0.0.1"}
        reply = client.chat.completions.create(messages=[{"role": "user", "content": PROMPT}])
        assert reply.content == "recorded"
    # The prompt did leave (decrypted, in the clear) for the host the evidence named.
    assert [m["content"] for m in seen[0]["messages"]] == [PROMPT]
