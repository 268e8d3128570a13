"""Upstream engines: a local Ollama, or any OpenAI-compatible server (vLLM, SGLang, llama.cpp's
server, another ``cllm serve``), reached over HTTP from inside the TD.

Both stream: the upstream's events are turned into ``TextPiece``s as they arrive, so the first
token is not held back. An upstream that fails, answers with an error, or ends a stream before
its final event becomes an ``EngineError`` the front turns into an error event.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx

from cllm.engine._types import (
    ChatMessage,
    ChatRequest,
    FieldRefusedError,
    Finish,
    FinishReason,
    ModelInfo,
    Sampling,
    TextPiece,
    Timings,
    ToolCall,
    ToolCalls,
)
from cllm.errors import EngineError

__all__ = ["OllamaEngine", "OpenAIEngine", "upstream_client"]

_log = logging.getLogger(__name__)

_PROBE_TIMEOUT: Final = 2.0


def upstream_client(base_url: str) -> httpx.AsyncClient:
    """One pooled client per upstream: no read timeout (a long answer streams for minutes), a
    connect timeout so a dead upstream fails fast, and enough connections for bursts."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        timeout=httpx.Timeout(connect=5.0, read=None, write=30.0, pool=None),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
    )


def _normalise(url: str) -> str:
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise EngineError(f"upstream {url!r} is not an http(s) URL", code="upstream_invalid")
    return url.removesuffix("/v1")


def _reason(value: object) -> FinishReason:
    if value in {"length", "tool_calls"}:
        return "length" if value == "length" else "tool_calls"
    return "stop"


def _openai_message(m: ChatMessage) -> dict[str, Any]:
    doc: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        doc["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.tool_call_id is not None:
        doc["tool_call_id"] = m.tool_call_id
    if m.name is not None:
        doc["name"] = m.name
    return doc


def _ollama_message(m: ChatMessage) -> dict[str, Any]:
    doc: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        calls = []
        for c in m.tool_calls:
            try:
                arguments = json.loads(c.arguments)
            except ValueError:
                arguments = {}
            calls.append({"function": {"name": c.name, "arguments": arguments}})
        doc["tool_calls"] = calls
    if m.role == "tool" and m.name is not None:
        doc["tool_name"] = m.name
    return doc


def _tools_doc(request: ChatRequest) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
            },
        }
        for t in request.tools
    ]


def _refuse_unmapped(sampling: Sampling, engine: str, fields: tuple[str, ...]) -> None:
    for name in fields:
        if getattr(sampling, name) is not None:
            raise FieldRefusedError(f"{name} cannot be passed to the {engine} upstream", field=name)


class _Clock:
    """Timings measured at this end of an upstream: until the answer starts (load), to the
    first token (prompt), first token to last (eval)."""

    def __init__(self) -> None:
        self.sent = time.perf_counter_ns()
        self.headers = self.sent
        self.first = 0

    def token(self) -> None:
        if not self.first:
            self.first = time.perf_counter_ns()

    def timings(self) -> Timings:
        end = time.perf_counter_ns()
        first = self.first or end
        return Timings(self.headers - self.sent, first - self.headers, end - first)


def _upstream_error(exc: httpx.HTTPError) -> EngineError:
    _log.warning("upstream request failed: %s", type(exc).__name__)
    return EngineError(f"upstream unavailable: {type(exc).__name__}", code="upstream_unavailable")


async def _error_text(response: httpx.Response) -> str:
    body = (await response.aread())[:500].decode("utf-8", "replace")
    try:
        detail = json.loads(body).get("error", body)
    except (ValueError, AttributeError):
        detail = body
    if isinstance(detail, dict):
        detail = detail.get("message", detail)
    return f"upstream answered HTTP {response.status_code}: {detail}"


async def _refusal(response: httpx.Response) -> EngineError:
    """An upstream that refuses the request (400, 422) refuses it for us too: the client gets a
    400 with the upstream's reason; anything else is the upstream failing."""
    text = await _error_text(response)
    if response.status_code in {400, 422}:
        return FieldRefusedError(text, field="request", code="upstream_refused")
    return EngineError(text, code="upstream_error")


class _Upstream:
    def __init__(self, *, upstream: str, model: ModelInfo, upstream_model: str) -> None:
        self._base = _normalise(upstream)
        self._model = model
        self._upstream_model = upstream_model
        self._client = upstream_client(self._base)
        self._described = False

    @property
    def model(self) -> ModelInfo:
        return self._model

    @property
    def upstream(self) -> str:
        return self._base

    async def _probe(self, path: str) -> bool:
        try:
            response = await self._client.get(path, timeout=_PROBE_TIMEOUT)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        await self._client.aclose()


class OpenAIEngine(_Upstream):
    """``POST /v1/chat/completions`` with ``stream: true`` and usage on an OpenAI-compatible
    upstream. Tools are passed through (the upstream refuses them if its model cannot)."""

    def __init__(self, *, upstream: str, model: ModelInfo, upstream_model: str) -> None:
        model = dataclasses.replace(model, supports_tools=True)
        super().__init__(upstream=upstream, model=model, upstream_model=upstream_model)

    @property
    def name(self) -> str:
        return "openai"

    async def start(self) -> None:
        # An upstream that starts after cllm is normal (service ordering): serve anyway, with
        # /healthz at 503 until it answers.
        if not await self.ready():
            _log.warning(
                "the OpenAI-compatible upstream at %s does not answer GET /v1/models yet",
                self._base,
            )

    async def ready(self) -> bool:
        return await self._probe("/v1/models")

    def queued(self) -> int:
        return 0  # the upstream queues or batches

    async def chat(self, request: ChatRequest) -> AsyncIterator[TextPiece | ToolCalls | Finish]:
        sampling = request.sampling
        _refuse_unmapped(
            sampling, "OpenAI-compatible", ("mirostat_mode", "mirostat_tau", "mirostat_eta")
        )
        if sampling.num_ctx is not None:
            raise FieldRefusedError(
                "num_ctx cannot be passed to an OpenAI-compatible upstream", field="num_ctx"
            )
        body: dict[str, Any] = {
            "model": self._upstream_model,
            "messages": [_openai_message(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for key in (
            "max_tokens",
            "temperature",
            "top_p",
            "seed",
            "frequency_penalty",
            "presence_penalty",
            "top_k",
            "min_p",
            "typical_p",
        ):
            value = getattr(sampling, key)
            if value is not None:
                body[key] = value
        if sampling.repeat_penalty is not None:
            body["repetition_penalty"] = sampling.repeat_penalty  # vLLM's name
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        fmt = request.json_format
        if fmt is not None:
            body["response_format"] = (
                {"type": "json_object"}
                if fmt.schema is None
                else {
                    "type": "json_schema",
                    "json_schema": {"name": "response", "schema": dict(fmt.schema)},
                }
            )
        if request.tools:
            body["tools"] = _tools_doc(request)
            choice = request.tool_choice
            if not request.parallel_tool_calls:
                body["parallel_tool_calls"] = False
            body["tool_choice"] = (
                choice
                if choice in {"auto", "none", "required"}
                else {"type": "function", "function": {"name": choice}}
            )
        reason: FinishReason | None = None
        usage: tuple[int, int] | None = None
        completion_tokens = 0
        calls: dict[int, list[str]] = {}  # index -> [id, name, arguments so far]
        clock = _Clock()
        try:
            async with self._client.stream("POST", "/v1/chat/completions", json=body) as response:
                clock.headers = time.perf_counter_ns()
                if response.status_code != 200:
                    raise await _refusal(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if "error" in event:
                        raise EngineError(
                            f"upstream error: {event['error']}", code="upstream_error"
                        )
                    for choice in event.get("choices") or ():
                        delta = choice.get("delta") or {}
                        text = delta.get("content")
                        if text:
                            clock.token()
                            completion_tokens += 1
                            yield TextPiece(text)
                        for call in delta.get("tool_calls") or ():
                            clock.token()
                            slot = calls.setdefault(int(call.get("index", 0)), ["", "", ""])
                            function = call.get("function") or {}
                            slot[0] = call.get("id") or slot[0]
                            slot[1] = function.get("name") or slot[1]
                            slot[2] += function.get("arguments") or ""
                        if choice.get("finish_reason"):
                            reason = _reason(choice["finish_reason"])
                    if event.get("usage"):
                        u = event["usage"]
                        usage = (int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0)))
                else:
                    raise EngineError(
                        "upstream ended the stream early", code="upstream_interrupted"
                    )
        except httpx.HTTPError as exc:
            raise _upstream_error(exc) from exc
        except (ValueError, TypeError) as exc:  # JSON from the upstream that does not decode
            raise EngineError("upstream sent a malformed event", code="upstream_error") from exc
        if reason is None:
            raise EngineError("upstream ended without a finish reason", code="upstream_interrupted")
        if calls:
            yield ToolCalls(
                tuple(
                    ToolCall(c[0] or f"call_{i}", c[1], c[2] or "{}")
                    for i, c in sorted(calls.items())
                )
            )
        prompt, completion = usage if usage else (0, completion_tokens)
        yield Finish(reason, prompt, completion, clock.timings())


class OllamaEngine(_Upstream):
    """``POST /api/chat`` (NDJSON stream) on a local Ollama."""

    @property
    def name(self) -> str:
        return "ollama"

    async def start(self) -> None:
        # An upstream that starts after cllm is normal (service ordering): serve anyway, with
        # /healthz at 503 until it answers.
        if not await self.ready():
            _log.warning(
                "the Ollama upstream at %s does not answer GET /api/version yet", self._base
            )

    async def ready(self) -> bool:
        up = await self._probe("/api/version")
        if up and not self._described:
            await self._describe()
        return up

    async def _describe(self) -> None:
        """What the upstream says about its model (``/api/show``): template, context length,
        details and whether it takes tools, for this server's ``/api/show``."""
        try:
            response = await self._client.post(
                "/api/show", json={"model": self._upstream_model}, timeout=_PROBE_TIMEOUT
            )
            doc = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return
        if not isinstance(doc, dict):
            return
        details: dict[str, Any] = doc.get("details") or {}
        info: dict[str, Any] = doc.get("model_info") or {}
        if not isinstance(details, dict) or not isinstance(info, dict):
            return
        family = str(details.get("family") or "")
        context = info.get(f"{family}.context_length") if family else None
        capabilities = doc.get("capabilities") or []
        self._model = dataclasses.replace(
            self._model,
            family=family,
            quantization=str(details.get("quantization_level") or ""),
            parameter_size=str(details.get("parameter_size") or ""),
            context_length=context if isinstance(context, int) else 0,
            template=str(doc.get("template") or ""),
            supports_tools=isinstance(capabilities, list) and "tools" in capabilities,
        )
        self._described = True

    def queued(self) -> int:
        return 0  # the upstream queues

    async def chat(self, request: ChatRequest) -> AsyncIterator[TextPiece | ToolCalls | Finish]:
        sampling = request.sampling
        options: dict[str, Any] = {}
        if sampling.max_tokens is not None:
            options["num_predict"] = sampling.max_tokens
        if sampling.mirostat_mode is not None:
            options["mirostat"] = sampling.mirostat_mode
        for key in (
            "temperature",
            "top_p",
            "seed",
            "top_k",
            "min_p",
            "typical_p",
            "repeat_penalty",
            "frequency_penalty",
            "presence_penalty",
            "mirostat_tau",
            "mirostat_eta",
            "num_ctx",
        ):
            value = getattr(sampling, key)
            if value is not None:
                options[key] = value
        if sampling.stop:
            options["stop"] = list(sampling.stop)
        body: dict[str, Any] = {
            "model": self._upstream_model,
            "messages": [_ollama_message(m) for m in request.messages],
            "stream": True,
            "options": options,
        }
        fmt = request.json_format
        if fmt is not None:
            body["format"] = "json" if fmt.schema is None else dict(fmt.schema)
        if request.tools and request.tool_choice != "none":
            if request.tool_choice != "auto":
                raise FieldRefusedError(
                    "an Ollama upstream cannot be made to call a tool; use 'auto'",
                    field="tool_choice",
                )
            body["tools"] = _tools_doc(request)
        clock = _Clock()
        try:
            async with self._client.stream("POST", "/api/chat", json=body) as response:
                clock.headers = time.perf_counter_ns()
                if response.status_code != 200:
                    raise await _refusal(response)
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("error"):
                        raise EngineError(
                            f"upstream error: {event['error']}", code="upstream_error"
                        )
                    message = event.get("message") or {}
                    text = message.get("content")
                    if text:
                        clock.token()
                        yield TextPiece(text)
                    if message.get("tool_calls"):
                        clock.token()
                        yield ToolCalls(
                            tuple(
                                ToolCall(
                                    str(c.get("id") or f"call_{i}"),
                                    str(c["function"]["name"]),
                                    json.dumps(c["function"].get("arguments") or {}),
                                )
                                for i, c in enumerate(message["tool_calls"])
                            )
                        )
                    if event.get("done"):
                        measured = clock.timings()
                        timings = Timings(
                            int(event.get("load_duration") or measured.load_ns),
                            int(event.get("prompt_eval_duration") or measured.prompt_ns),
                            int(event.get("eval_duration") or measured.eval_ns),
                        )
                        yield Finish(
                            _reason(event.get("done_reason")),
                            int(event.get("prompt_eval_count") or 0),
                            int(event.get("eval_count") or 0),
                            timings,
                        )
                        return
        except httpx.HTTPError as exc:
            raise _upstream_error(exc) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineError("upstream sent a malformed line", code="upstream_error") from exc
        raise EngineError("upstream ended the stream early", code="upstream_interrupted")
