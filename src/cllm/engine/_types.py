"""What every engine takes and yields: a chat request in, text pieces and one finish out.

The server speaks OpenAI and Ollama on its front; engines speak whatever they speak behind it.
This small common shape sits between the two so any front works with any engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

from cllm.errors import EngineError

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "Engine",
    "Finish",
    "FinishReason",
    "ModelInfo",
    "Sampling",
    "TextPiece",
    "complete",
]

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Sampling:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    sampling: Sampling = Sampling()


@dataclass(frozen=True, slots=True)
class TextPiece:
    text: str


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str  # the name clients pass as ``model``
    size: int  # bytes of the weights, 0 when unknown
    digest: str  # "sha384:<hex>" of the measured model, "" when measured elsewhere
    family: str = ""
    quantization: str = ""


class Engine(Protocol):
    """An inference engine. ``chat`` yields ``TextPiece``s then exactly one ``Finish``; it raises
    ``EngineError`` when the engine fails (before or during the stream). Closing the iterator
    early (client gone) must free the engine at once."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> ModelInfo: ...

    async def start(self) -> None:
        """Load or connect; raises ``EngineError`` when the engine cannot serve."""

    async def ready(self) -> bool:
        """True while the engine can take a request."""

    def chat(self, request: ChatRequest) -> AsyncIterator[TextPiece | Finish]: ...

    async def aclose(self) -> None: ...


async def complete(engine: Engine, request: ChatRequest) -> tuple[str, Finish]:
    """The whole answer of a non-streamed request: its text and its ``Finish``."""
    texts: list[str] = []
    async for item in engine.chat(request):
        if isinstance(item, Finish):
            return "".join(texts), item
        texts.append(item.text)
    raise EngineError("the engine ended without finishing", code="engine_failed")
