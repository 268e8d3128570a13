"""Request bodies of the OpenAI- and Ollama-compatible routes (pydantic, at the HTTP edge only).

Unknown fields are ignored, as the real APIs do, so clients that send newer options still work;
fields cllm acts on are checked strictly.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from cllm.engine import ChatMessage, ChatRequest, Sampling

__all__ = [
    "OllamaChatBody",
    "OllamaGenerateBody",
    "OpenAIChatBody",
]

_Role = Literal["system", "developer", "user", "assistant"]


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class _OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: _Role
    content: str | list[_TextPart] | None = None

    def to_message(self) -> ChatMessage:
        content = self.content or ""
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        role = "system" if self.role == "developer" else self.role
        return ChatMessage(role=role, content=content)


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


class OpenAIChatBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: Annotated[list[_OpenAIMessage], Field(min_length=1)]
    stream: bool = False
    stream_options: _StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    seed: int | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1

    def to_request(self) -> ChatRequest:
        return ChatRequest(
            messages=tuple(m.to_message() for m in self.messages),
            sampling=Sampling(
                max_tokens=self.max_completion_tokens or self.max_tokens,
                temperature=self.temperature,
                top_p=self.top_p,
                seed=self.seed,
                stop=_stops(self.stop),
            ),
        )


class _OllamaOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    num_predict: int | None = None
    temperature: Annotated[float, Field(ge=0)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    seed: int | None = None
    stop: list[str] | None = None

    def to_sampling(self) -> Sampling:
        # Ollama: num_predict -1 (or -2) means "no limit".
        limit = self.num_predict if self.num_predict is not None and self.num_predict > 0 else None
        return Sampling(
            max_tokens=limit,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=tuple(self.stop or ()),
        )


class _OllamaMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str = ""


class OllamaChatBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[_OllamaMessage] = Field(default_factory=list)
    stream: bool = True
    options: _OllamaOptions = Field(default_factory=_OllamaOptions)

    def to_request(self) -> ChatRequest:
        return ChatRequest(
            messages=tuple(ChatMessage(role=m.role, content=m.content) for m in self.messages),
            sampling=self.options.to_sampling(),
        )


class OllamaGenerateBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    prompt: str = ""
    system: str | None = None
    stream: bool = True
    raw: bool = False
    options: _OllamaOptions = Field(default_factory=_OllamaOptions)

    def to_request(self) -> ChatRequest:
        messages = [ChatMessage(role="system", content=self.system)] if self.system else []
        messages.append(ChatMessage(role="user", content=self.prompt))
        return ChatRequest(messages=tuple(messages), sampling=self.options.to_sampling())
