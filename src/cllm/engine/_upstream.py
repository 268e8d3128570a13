"""Upstream engines: a local Ollama, or any OpenAI-compatible server (vLLM, SGLang, llama.cpp's
server, another ``cllm serve``), reached over HTTP from inside the TD.

Both stream: the upstream's events are turned into ``TextPiece``s as they arrive, so the first
token is not held back. An upstream that fails, answers with an error, or ends a stream before
its final event becomes an ``EngineError`` the front turns into an error event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx

from cllm.engine._types import ChatRequest, Finish, FinishReason, ModelInfo, TextPiece
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
    return "length" if value == "length" else "stop"


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


class _Upstream:
    def __init__(self, *, upstream: str, model: ModelInfo, upstream_model: str) -> None:
        self._base = _normalise(upstream)
        self._model = model
        self._upstream_model = upstream_model
        self._client = upstream_client(self._base)

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
    upstream."""

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

    async def chat(self, request: ChatRequest) -> AsyncIterator[TextPiece | Finish]:
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": self._upstream_model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for key in ("max_tokens", "temperature", "top_p", "seed"):
            value = getattr(sampling, key)
            if value is not None:
                body[key] = value
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        reason: FinishReason | None = None
        usage: tuple[int, int] | None = None
        completion_tokens = 0
        try:
            async with self._client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    raise EngineError(await _error_text(response), code="upstream_error")
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
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            completion_tokens += 1
                            yield TextPiece(text)
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
        except ValueError as exc:  # JSON from the upstream that does not decode
            raise EngineError("upstream sent a malformed event", code="upstream_error") from exc
        if reason is None:
            raise EngineError("upstream ended without a finish reason", code="upstream_interrupted")
        prompt, completion = usage if usage else (0, completion_tokens)
        yield Finish(reason, prompt, completion)


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
        return await self._probe("/api/version")

    async def chat(self, request: ChatRequest) -> AsyncIterator[TextPiece | Finish]:
        sampling = request.sampling
        options: dict[str, Any] = {}
        if sampling.max_tokens is not None:
            options["num_predict"] = sampling.max_tokens
        for key in ("temperature", "top_p", "seed"):
            value = getattr(sampling, key)
            if value is not None:
                options[key] = value
        if sampling.stop:
            options["stop"] = list(sampling.stop)
        body = {
            "model": self._upstream_model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "options": options,
        }
        try:
            async with self._client.stream("POST", "/api/chat", json=body) as response:
                if response.status_code != 200:
                    raise EngineError(await _error_text(response), code="upstream_error")
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("error"):
                        raise EngineError(
                            f"upstream error: {event['error']}", code="upstream_error"
                        )
                    text = (event.get("message") or {}).get("content")
                    if text:
                        yield TextPiece(text)
                    if event.get("done"):
                        yield Finish(
                            _reason(event.get("done_reason")),
                            int(event.get("prompt_eval_count") or 0),
                            int(event.get("eval_count") or 0),
                        )
                        return
        except httpx.HTTPError as exc:
            raise _upstream_error(exc) from exc
        except ValueError as exc:
            raise EngineError("upstream sent a malformed line", code="upstream_error") from exc
        raise EngineError("upstream ended the stream early", code="upstream_interrupted")
