"""What every engine takes and yields: a chat request in, text pieces and one finish out.

The server speaks OpenAI and Ollama on its front; engines speak whatever they speak behind it.
This small common shape sits between the two so any front works with any engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from cllm.errors import EngineError

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "Engine",
    "EngineBusyError",
    "FieldRefusedError",
    "Finish",
    "FinishReason",
    "JsonFormat",
    "ModelInfo",
    "Sampling",
    "TextPiece",
    "Timings",
    "Tool",
    "ToolCall",
    "ToolCalls",
    "ToolChoice",
    "complete",
    "complete_with_tools",
]

FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the arguments object as JSON text (OpenAI's shape; Ollama's is parsed)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # assistant turns that called tools
    tool_call_id: str | None = None  # tool turns: the call answered (OpenAI)
    name: str | None = None  # tool turns: the tool's name (Ollama's tool_name)


@dataclass(frozen=True, slots=True)
class Sampling:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    top_k: int | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repeat_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    mirostat_mode: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    # Ollama's num_ctx: the context this request may use (prompt and answer together).
    num_ctx: int | None = None


@dataclass(frozen=True, slots=True)
class JsonFormat:
    """Constrained output: any JSON object (``schema`` None), or JSON valid for ``schema``."""

    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any]  # a JSON schema, as the client sent it


# "auto": the model decides; "none": no call; "required": some call; any other string: that
# tool, by name.
ToolChoice = str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    sampling: Sampling = Sampling()
    json_format: JsonFormat | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True  # False: at most one call per answer


@dataclass(frozen=True, slots=True)
class TextPiece:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """The model's tool calls: the answer's last output before its ``Finish``."""

    calls: tuple[ToolCall, ...]


@dataclass(frozen=True, slots=True)
class Timings:
    """Nanoseconds, measured by the engine: waiting for the engine (queue and set-up), reading
    the prompt (up to the first token), and generating (first token to last)."""

    load_ns: int
    prompt_ns: int
    eval_ns: int


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    timings: Timings | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str  # the name clients pass as ``model``
    size: int  # bytes of the weights, 0 when unknown
    digest: str  # "sha384:<hex>" of the measured model, "" when measured elsewhere
    family: str = ""
    quantization: str = ""
    context_length: int = 0  # tokens the engine gives one request, 0 when unknown
    template: str = ""  # the chat template, when the engine knows it
    parameter_size: str = ""
    supports_tools: bool = False
    extra: Mapping[str, object] = field(default_factory=dict)  # more model_info, as /api/show


class FieldRefusedError(EngineError):
    """A request field this engine cannot honour: 400 naming ``field``."""

    def __init__(self, message: str, *, field: str, code: str = "unsupported_field") -> None:
        super().__init__(message, code=code)
        self.field = field


class EngineBusyError(EngineError):
    """The engine's queue is full: 429 with ``Retry-After: retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, code="engine_busy")
        self.retry_after = retry_after


class Engine(Protocol):
    """An inference engine. ``chat`` yields ``TextPiece``s, at most one ``ToolCalls``, then
    exactly one ``Finish``; it raises ``FieldRefusedError`` or ``EngineBusyError`` before its
    first item, and ``EngineError`` when the engine fails (before or during the stream). Closing the
    iterator early (client gone) must free the engine at once, queued or running."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> ModelInfo: ...

    async def start(self) -> None:
        """Load or connect; raises ``EngineError`` when the engine cannot serve."""

    async def ready(self) -> bool:
        """True while the engine can take a request."""

    def chat(self, request: ChatRequest) -> AsyncIterator[TextPiece | ToolCalls | Finish]: ...

    def queued(self) -> int:
        """Requests waiting for the engine now (0 for engines that do not queue)."""

    async def aclose(self) -> None: ...


async def complete(engine: Engine, request: ChatRequest) -> tuple[str, Finish]:
    """The whole answer of a non-streamed request: its text and its ``Finish``."""
    text, _, finish = await complete_with_tools(engine, request)
    return text, finish


async def complete_with_tools(
    engine: Engine, request: ChatRequest
) -> tuple[str, tuple[ToolCall, ...], Finish]:
    texts: list[str] = []
    calls: tuple[ToolCall, ...] = ()
    async for item in engine.chat(request):
        if isinstance(item, Finish):
            return "".join(texts), calls, item
        if isinstance(item, ToolCalls):
            calls = item.calls
        else:
            texts.append(item.text)
    raise EngineError("the engine ended without finishing", code="engine_failed")
