"""The embedded engine's line: arrival order, a bounded queue (``EngineBusyError`` with a
``retry_after``), and requests whose consumer leaves while they wait never reaching llama.cpp.

llama.cpp is replaced by a stand-in whose generations wait for the test's go-ahead, so the order
of events is the test's, not the machine's speed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cllm.engine import (
    ChatMessage,
    ChatRequest,
    EngineBusyError,
    Finish,
    LlamaCppEngine,
    ModelInfo,
    Sampling,
    complete,
)


class _SlowLlama:
    """Yields ``max_tokens`` one-letter tokens, the first only once ``go`` is set."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.started: list[str] = []
        self.n_tokens = 0

    def create_chat_completion(self, *, messages: list[dict[str, Any]], **options: Any) -> Any:
        self.started.append(messages[-1]["content"])

        def chunks() -> Iterator[dict[str, Any]]:
            assert self.go.wait(30)
            for _ in range(options["max_tokens"]):
                self.n_tokens += 1
                yield {"choices": [{"delta": {"content": "x"}, "finish_reason": None}]}
            yield {"choices": [{"delta": {}, "finish_reason": "length"}]}

        return chunks()


def _engine(max_queue: int) -> tuple[LlamaCppEngine, _SlowLlama]:
    engine = LlamaCppEngine(
        model_path=Path("unused.gguf"), model=ModelInfo("m", 0, ""), max_queue=max_queue
    )
    fake = _SlowLlama()
    engine._llama = fake  # type: ignore[assignment]  # the stand-in for a loaded model
    return engine, fake


def _ask(name: str) -> ChatRequest:
    return ChatRequest((ChatMessage("user", name),), Sampling(max_tokens=2))


async def _until(predicate: Any) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_requests_are_served_in_arrival_order() -> None:
    engine, fake = _engine(max_queue=8)

    async def run() -> list[str]:
        tasks = []
        for name in ["a", "b", "c", "d", "e"]:
            tasks.append(asyncio.create_task(complete(engine, _ask(name))))
            await asyncio.sleep(0.02)  # arrival order a, b, c, d, e
        await _until(lambda: engine.queued() == 4)
        fake.go.set()
        results = await asyncio.gather(*tasks)
        assert all(isinstance(f, Finish) and f.completion_tokens == 2 for _, f in results)
        return fake.started

    assert asyncio.run(run()) == ["a", "b", "c", "d", "e"]


def test_a_full_queue_refuses_with_a_retry_after() -> None:
    engine, fake = _engine(max_queue=1)

    async def run() -> EngineBusyError:
        first = asyncio.create_task(complete(engine, _ask("a")))
        await _until(lambda: fake.started == ["a"])
        second = asyncio.create_task(complete(engine, _ask("b")))
        await _until(lambda: engine.queued() == 1)
        with pytest.raises(EngineBusyError) as caught:
            await complete(engine, _ask("c"))
        fake.go.set()
        await asyncio.gather(first, second)
        # Once the line is empty again, a request is taken.
        await complete(engine, _ask("d"))
        return caught.value

    busy = asyncio.run(run())
    assert busy.code == "engine_busy"
    assert busy.retry_after >= 1
    assert "--max-queue 1" in busy.message
    assert fake.started == ["a", "b", "d"]


def test_a_queued_request_whose_client_left_never_runs() -> None:
    engine, fake = _engine(max_queue=1)

    async def run() -> None:
        first = asyncio.create_task(complete(engine, _ask("a")))
        await _until(lambda: fake.started == ["a"])
        leaving = asyncio.create_task(complete(engine, _ask("gone")))
        await _until(lambda: engine.queued() == 1)
        leaving.cancel()  # the client hung up while waiting
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert engine.queued() == 0  # its place is free at once...
        third = asyncio.create_task(complete(engine, _ask("c")))  # ...not a 429
        await _until(lambda: engine.queued() == 1)
        fake.go.set()
        await asyncio.gather(first, third)

    asyncio.run(run())
    assert fake.started == ["a", "c"]


def test_max_queue_zero_serves_one_at_a_time_and_refuses_waiting() -> None:
    engine, fake = _engine(max_queue=0)

    async def run() -> None:
        first = asyncio.create_task(complete(engine, _ask("a")))
        await _until(lambda: fake.started == ["a"])
        with pytest.raises(EngineBusyError):
            await complete(engine, _ask("b"))
        fake.go.set()
        await first

    asyncio.run(run())
    with pytest.raises(ValueError, match="max_queue"):
        LlamaCppEngine(model_path=Path("x"), model=ModelInfo("m", 0, ""), max_queue=-1)
