"""Request bodies of the OpenAI- and Ollama-compatible routes (pydantic, at the HTTP edge only).

Every field of the real APIs' chat requests is listed here and either honoured (mapped onto
the engine request) or refused with 400 naming the field (``FieldRefusedError``); docs/server.md
tells each field's fate. Fields that are not part of either API are ignored, so clients that
send newer or vendor options still work.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cllm.engine import (
    ChatMessage,
    ChatRequest,
    FieldRefusedError,
    JsonFormat,
    Sampling,
    Tool,
    ToolCall,
)

__all__ = [
    "OllamaChatBody",
    "OllamaGenerateBody",
    "OllamaShowBody",
    "OpenAIChatBody",
]

_NO_VISION = "this model has no vision: it cannot read images"


def _refuse(field: str, message: str, code: str = "unsupported_field") -> FieldRefusedError:
    return FieldRefusedError(f"{field}: {message}", field=field, code=code)


class _Edge(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- OpenAI ---------------------------------------------------------------------------------


class _Part(_Edge):
    type: str
    text: str | None = None
    refusal: str | None = None


class _FunctionCall(_Edge):
    name: str
    arguments: str = "{}"


class _OpenAIToolCall(_Edge):
    id: str = ""
    type: str = "function"
    function: _FunctionCall


class _OpenAIMessage(_Edge):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[_Part] | None = None
    name: str | None = None
    tool_calls: list[_OpenAIToolCall] | None = None
    function_call: _FunctionCall | None = None
    tool_call_id: str | None = None
    audio: dict[str, Any] | None = None

    def to_message(self, index: int) -> ChatMessage:
        where = f"messages.{index}"
        content = self.content or ""
        if isinstance(content, list):
            texts: list[str] = []
            for p, part in enumerate(content):
                if part.type in {"text", "input_text"} and part.text is not None:
                    texts.append(part.text)
                elif part.type == "refusal" and part.refusal is not None:
                    texts.append(part.refusal)
                elif part.type in {"image_url", "input_image"}:
                    raise _refuse(f"{where}.content.{p}", _NO_VISION, "vision_unsupported")
                else:
                    raise _refuse(
                        f"{where}.content.{p}",
                        f"content parts of type {part.type!r} are not supported; send text",
                    )
            content = "".join(texts)
        if self.audio is not None:
            raise _refuse(f"{where}.audio", "this model has no audio")
        calls = [c for c in self.tool_calls or ()]
        if self.function_call is not None:  # the legacy single call
            calls.append(_OpenAIToolCall(function=self.function_call))
        tool_calls = tuple(
            ToolCall(c.id or f"call_{i}", c.function.name, c.function.arguments)
            for i, c in enumerate(calls)
        )
        if tool_calls and self.role != "assistant":
            raise _refuse(f"{where}.tool_calls", "only assistant messages carry tool calls")
        if self.role == "tool" and not self.tool_call_id:
            raise _refuse(f"{where}.tool_call_id", "a tool message names the call it answers")
        role: Literal["system", "user", "assistant", "tool"]
        if self.role == "developer":
            role = "system"
        elif self.role == "function":
            role = "tool"  # the legacy function result, by name
        else:
            role = self.role
        return ChatMessage(
            role=role,
            content=content,
            tool_calls=tool_calls,
            tool_call_id=self.tool_call_id,
            name=self.name,
        )


class _StreamOptions(_Edge):
    include_usage: bool = False


class _JsonSchema(_Edge):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class _ResponseFormat(_Edge):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JsonSchema | None = None


class _FunctionDef(_Edge):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    strict: bool | None = None


class _OpenAITool(_Edge):
    type: str = "function"
    function: _FunctionDef


class _NamedTool(_Edge):
    type: str = "function"
    function: _FunctionDef | None = None
    name: str | None = None


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


_Penalty = Annotated[float, Field(ge=-2, le=2)]


class OpenAIChatBody(_Edge):
    model: str
    messages: Annotated[list[_OpenAIMessage], Field(min_length=1)]
    stream: bool | None = False
    stream_options: _StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    seed: int | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    n: Annotated[int, Field(ge=1, le=1)] | None = 1
    frequency_penalty: _Penalty | None = None
    presence_penalty: _Penalty | None = None
    response_format: _ResponseFormat | None = None
    tools: list[_OpenAITool] | None = None
    tool_choice: str | _NamedTool | None = None
    parallel_tool_calls: bool | None = None
    functions: list[_FunctionDef] | None = None
    function_call: str | _NamedTool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    store: bool | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None
    service_tier: str | None = None
    # Identifiers for the caller's bookkeeping; this server keeps nothing, so they change nothing.
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    metadata: dict[str, str] | None = None
    # Not OpenAI's, but sent by clients of llama.cpp's server and vLLM.
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    typical_p: Annotated[float, Field(gt=0, le=1)] | None = None
    repeat_penalty: Annotated[float, Field(ge=0)] | None = None
    repetition_penalty: Annotated[float, Field(ge=0)] | None = None

    def _refusals(self) -> None:
        if self.logprobs:
            raise _refuse("logprobs", "token log probabilities are not returned by this server")
        if self.top_logprobs:
            raise _refuse("top_logprobs", "token log probabilities are not returned")
        if self.logit_bias:
            raise _refuse("logit_bias", "token ids differ between tokenizers; not supported")
        if self.store:
            raise _refuse("store", "this server stores nothing")
        if self.modalities is not None and set(self.modalities) - {"text"}:
            raise _refuse("modalities", "this model answers in text only")
        if self.audio is not None:
            raise _refuse("audio", "this model has no audio")
        if self.prediction is not None:
            raise _refuse("prediction", "predicted outputs are not supported")
        if self.reasoning_effort is not None:
            raise _refuse("reasoning_effort", "this model has no reasoning control")
        if self.verbosity is not None:
            raise _refuse("verbosity", "not supported")
        if self.web_search_options is not None:
            raise _refuse("web_search_options", "this server does not search the web")
        if self.service_tier not in {None, "auto", "default"}:
            raise _refuse("service_tier", "this server has one tier")

    def _tools(self) -> tuple[tuple[Tool, ...], str]:
        defs = [t.function for t in self.tools or ()]
        for i, t in enumerate(self.tools or ()):
            if t.type != "function":
                raise _refuse(f"tools.{i}.type", f"tools of type {t.type!r} are not supported")
        defs += list(self.functions or ())
        tools = tuple(Tool(d.name, d.description, d.parameters) for d in defs)
        choice = self.tool_choice if self.tool_choice is not None else self.function_call
        field = "tool_choice" if self.tool_choice is not None else "function_call"
        if choice is None:
            return tools, "auto"
        if isinstance(choice, str):
            if choice not in {"auto", "none", "required"}:
                raise _refuse(field, "one of 'auto', 'none', 'required' or a named function")
            return tools, choice
        name = choice.function.name if choice.function is not None else choice.name
        if choice.type != "function" or not name:
            raise _refuse(field, "only a named function can be chosen")
        if name not in {t.name for t in tools}:
            raise _refuse(field, f"names no tool in tools: {name!r}")
        return tools, name

    def _format(self) -> JsonFormat | None:
        rf = self.response_format
        if rf is None or rf.type == "text":
            return None
        if rf.type == "json_object":
            return JsonFormat()
        if rf.json_schema is None or rf.json_schema.schema_ is None:
            raise _refuse("response_format.json_schema", "json_schema needs a schema")
        return JsonFormat(rf.json_schema.schema_)

    def to_request(self) -> ChatRequest:
        self._refusals()
        tools, choice = self._tools()
        return ChatRequest(
            messages=tuple(m.to_message(i) for i, m in enumerate(self.messages)),
            sampling=Sampling(
                max_tokens=self.max_completion_tokens or self.max_tokens,
                temperature=self.temperature,
                top_p=self.top_p,
                seed=self.seed,
                stop=_stops(self.stop),
                top_k=self.top_k,
                min_p=self.min_p,
                typical_p=self.typical_p,
                repeat_penalty=self.repeat_penalty or self.repetition_penalty,
                frequency_penalty=self.frequency_penalty,
                presence_penalty=self.presence_penalty,
            ),
            json_format=self._format(),
            tools=tools,
            tool_choice=choice,
            parallel_tool_calls=self.parallel_tool_calls is not False,
        )


# --- Ollama ---------------------------------------------------------------------------------

# Options that configure how a model is loaded: fixed (and measured) when the server starts.
_LOAD_OPTIONS = (
    "numa",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "low_vram",
    "use_mmap",
    "use_mlock",
    "num_thread",
    "vocab_only",
    "f16_kv",
    "logits_all",
    "num_keep",
)


class _OllamaOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    num_predict: int | None = None
    num_ctx: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    typical_p: Annotated[float, Field(gt=0, le=1)] | None = None
    repeat_penalty: Annotated[float, Field(ge=0)] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    mirostat: Annotated[int, Field(ge=0, le=2)] | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    seed: int | None = None
    stop: list[str] | None = None
    repeat_last_n: int | None = None
    tfs_z: float | None = None
    penalize_newline: bool | None = None

    def to_sampling(self) -> Sampling:
        extra = self.model_extra or {}
        for name in _LOAD_OPTIONS:
            if extra.get(name) is not None:
                raise _refuse(
                    f"options.{name}",
                    "a load-time option, fixed (and measured) when the server starts",
                )
        if self.repeat_last_n is not None and self.repeat_last_n != 64:
            raise _refuse("options.repeat_last_n", "fixed at 64 tokens by the engine")
        if self.tfs_z is not None and self.tfs_z != 1.0:
            raise _refuse("options.tfs_z", "tail-free sampling is gone from llama.cpp")
        if self.penalize_newline:
            raise _refuse("options.penalize_newline", "not supported by llama.cpp any more")
        # Ollama: num_predict -1 (or -2) means "no limit" (here: the server's default cap).
        limit = self.num_predict if self.num_predict is not None and self.num_predict > 0 else None
        return Sampling(
            max_tokens=limit,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=tuple(self.stop or ()),
            top_k=self.top_k,
            min_p=self.min_p,
            typical_p=self.typical_p,
            repeat_penalty=self.repeat_penalty,
            frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty,
            mirostat_mode=self.mirostat,
            mirostat_tau=self.mirostat_tau,
            mirostat_eta=self.mirostat_eta,
            num_ctx=self.num_ctx,
        )


class _OllamaFunctionCall(_Edge):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class _OllamaToolCall(_Edge):
    function: _OllamaFunctionCall
    id: str | None = None


class _OllamaMessage(_Edge):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[_OllamaToolCall] | None = None
    tool_name: str | None = None
    # An earlier answer's reasoning: not shown to the model again (as Ollama does).
    thinking: str | None = None

    def to_message(self, index: int) -> ChatMessage:
        if self.images:
            raise _refuse(f"messages.{index}.images", _NO_VISION, "vision_unsupported")
        calls = tuple(
            ToolCall(
                c.id or f"call_{i}",
                c.function.name,
                json.dumps(c.function.arguments, ensure_ascii=False),
            )
            for i, c in enumerate(self.tool_calls or ())
        )
        if calls and self.role != "assistant":
            raise _refuse(f"messages.{index}.tool_calls", "only assistant messages carry calls")
        return ChatMessage(
            role=self.role,
            content=self.content,
            tool_calls=calls,
            name=self.tool_name,
            tool_call_id=None,
        )


class _OllamaTool(_Edge):
    type: str = "function"
    function: _FunctionDef


def _ollama_format(value: str | dict[str, Any] | None) -> JsonFormat | None:
    if value is None or value == "":
        return None
    if value == "json":
        return JsonFormat()
    if isinstance(value, dict):
        return JsonFormat(value)
    raise _refuse("format", "'json' or a JSON schema")


class _OllamaCommon(_Edge):
    model: str
    stream: bool | None = True
    format: str | dict[str, Any] | None = None
    options: _OllamaOptions = Field(default_factory=_OllamaOptions)
    # The model stays loaded for the server's whole life; any value is honoured by that.
    keep_alive: str | int | float | None = None
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    def _common(self) -> None:
        if self.think not in {None, False}:
            raise _refuse("think", "this model does not think (no reasoning mode)")
        if self.logprobs:
            raise _refuse("logprobs", "token log probabilities are not returned by this server")
        if self.top_logprobs:
            raise _refuse("top_logprobs", "token log probabilities are not returned")


class OllamaChatBody(_OllamaCommon):
    messages: list[_OllamaMessage] = Field(default_factory=list)
    tools: list[_OllamaTool] | None = None

    def to_request(self) -> ChatRequest:
        self._common()
        for i, t in enumerate(self.tools or ()):
            if t.type != "function":
                raise _refuse(f"tools.{i}.type", f"tools of type {t.type!r} are not supported")
        tools = tuple(
            Tool(t.function.name, t.function.description, t.function.parameters)
            for t in self.tools or ()
        )
        return ChatRequest(
            messages=tuple(m.to_message(i) for i, m in enumerate(self.messages)),
            sampling=self.options.to_sampling(),
            json_format=_ollama_format(self.format),
            tools=tools,
        )


class OllamaGenerateBody(_OllamaCommon):
    prompt: str = ""
    system: str | None = None
    raw: bool = False
    suffix: str | None = None
    images: list[str] | None = None
    template: str | None = None
    context: list[int] | None = None

    def to_request(self) -> ChatRequest:
        self._common()
        if self.raw:
            raise _refuse("raw", "raw prompts are not supported; send a chat or a prompt")
        if self.suffix:
            raise _refuse("suffix", "fill-in-the-middle is not supported")
        if self.images:
            raise _refuse("images", _NO_VISION, "vision_unsupported")
        if self.template:
            raise _refuse("template", "the chat template is the measured model's own")
        if self.context:
            raise _refuse("context", "the deprecated context tokens are not supported; send a chat")
        messages = [ChatMessage(role="system", content=self.system)] if self.system else []
        messages.append(ChatMessage(role="user", content=self.prompt))
        return ChatRequest(
            messages=tuple(messages),
            sampling=self.options.to_sampling(),
            json_format=_ollama_format(self.format),
        )


class OllamaShowBody(_Edge):
    model: str | None = None
    name: str | None = None  # older clients
    verbose: bool = False
