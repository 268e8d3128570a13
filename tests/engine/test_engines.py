"""Engines in-process: the embedded llama.cpp engine (default model found on disk, queued
generations, early close) and the upstream engines' failures (nothing listening, bad URL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cllm.engine import (
    ChatMessage,
    ChatRequest,
    Finish,
    LlamaCppEngine,
    ModelInfo,
    OllamaEngine,
    OpenAIEngine,
    Sampling,
    TextPiece,
    complete,
    default_model_path,
)
from cllm.errors import EngineError

REQUEST = ChatRequest(
    messages=(ChatMessage("user", "Write a poem about rivers."),),
    sampling=Sampling(max_tokens=12, temperature=0, seed=1),
)


def test_default_model_is_the_packaged_smollm2() -> None:
    path = default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
    assert path.read_bytes()[:4] == b"GGUF"


@pytest.fixture(scope="module")
def engine() -> LlamaCppEngine:
    model = ModelInfo(id="m", size=0, digest="")
    return LlamaCppEngine(model_path=default_model_path(), model=model, n_ctx=1024, n_threads=1)


def test_llama_engine_generates_and_queues(engine: LlamaCppEngine) -> None:
    async def run() -> list[tuple[str, Finish]]:
        await engine.start()
        assert await engine.ready()
        # Three at once share one llama.cpp context: they queue and each gets its own answer.
        return await asyncio.gather(*(complete(engine, REQUEST) for _ in range(3)))

    results = asyncio.run(run())
    assert results[0][0]
    assert [text for text, _ in results] == [results[0][0]] * 3  # greedy: identical
    for _, finish in results:
        assert finish.reason == "length"
        assert finish.completion_tokens == 12
        assert finish.prompt_tokens > 0


async def _pieces(engine: LlamaCppEngine) -> tuple[list[str], Finish]:
    await engine.start()
    pieces: list[str] = []
    async for item in engine.chat(REQUEST):
        if isinstance(item, Finish):
            return pieces, item
        pieces.append(item.text)
    raise AssertionError("no Finish")


def test_llama_engine_hands_over_tokens_within_the_stream_interval_together(
    engine: LlamaCppEngine,
) -> None:
    alone, finish = asyncio.run(_pieces(engine))  # stream_interval 0: every token alone
    assert len(alone) == finish.completion_tokens == 12
    model = ModelInfo(id="m", size=0, digest="")
    held = LlamaCppEngine(
        model_path=default_model_path(), model=model, n_ctx=1024, n_threads=1, stream_interval=3600
    )
    # An hour: the first token goes at once, every later one waits for the end.
    together, finish = asyncio.run(_pieces(held))
    assert together == [alone[0], "".join(alone[1:])]
    assert finish.completion_tokens == 12
    with pytest.raises(ValueError, match="stream_interval"):
        LlamaCppEngine(model_path=default_model_path(), model=model, stream_interval=-1)


def test_llama_engine_stops_when_the_consumer_leaves(engine: LlamaCppEngine) -> None:
    long = ChatRequest(messages=REQUEST.messages, sampling=Sampling(max_tokens=900))

    async def run() -> float:
        await engine.start()
        stream = engine.chat(long)
        seen = 0
        async for item in stream:
            assert isinstance(item, TextPiece)
            seen += 1
            if seen == 3:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        started = loop.time()
        await complete(engine, REQUEST)  # would wait ~900 tokens if the first kept going
        return loop.time() - started

    assert asyncio.run(run()) < 8


def test_llama_engine_reports_a_bad_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    engine = LlamaCppEngine(model_path=bad, model=ModelInfo("m", 0, ""), n_threads=1)
    with pytest.raises(EngineError) as caught:
        asyncio.run(engine.start())
    assert caught.value.code == "model_load_failed"


@pytest.mark.parametrize("kind", [OpenAIEngine, OllamaEngine])
def test_upstream_that_does_not_answer(kind: type[OpenAIEngine] | type[OllamaEngine]) -> None:
    engine = kind(upstream="http://127.0.0.1:9", model=ModelInfo("m", 0, ""), upstream_model="m")

    async def run() -> None:
        await engine.start()  # an upstream may come up later: no failure at start...
        assert not await engine.ready()  # ...but not ready, so /healthz says 503
        with pytest.raises(EngineError) as caught:
            async for _ in engine.chat(REQUEST):
                pass
        assert caught.value.code == "upstream_unavailable"
        await engine.aclose()

    asyncio.run(run())


def test_upstream_url_must_be_http() -> None:
    with pytest.raises(EngineError) as caught:
        OpenAIEngine(upstream="file:///etc", model=ModelInfo("m", 0, ""), upstream_model="m")
    assert caught.value.code == "upstream_invalid"
