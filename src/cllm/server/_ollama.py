"""Ollama-compatible routes: ``GET /api/tags``, ``GET /api/version``, ``POST /api/chat``,
``POST /api/generate`` (NDJSON streaming by default, as Ollama does)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from cllm.engine import ChatRequest, Engine, Finish, ModelInfo, complete
from cllm.errors import CllmError, EngineError
from cllm.server._channel import (
    NDJSON_MEDIA_TYPE,
    Channel,
    FinalRecord,
    Part,
    json_bytes,
    open_channel,
)
from cllm.server._errors import ollama_error, validation_message
from cllm.server._runtime import Runtime
from cllm.server._schemas import OllamaChatBody, OllamaGenerateBody

__all__ = ["OLLAMA_API_VERSION", "ollama_router", "served_name"]

# The Ollama API version whose shapes these routes follow.
OLLAMA_API_VERSION: Final = "0.6.3"


def served_name(model: ModelInfo) -> str:
    return model.id if ":" in model.id else f"{model.id}:latest"


def _matches(requested: str, model: ModelInfo) -> bool:
    return requested in {model.id, served_name(model)}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _stats(finish: Finish, started: int) -> dict[str, object]:
    return {
        "done_reason": finish.reason,
        "total_duration": time.perf_counter_ns() - started,
        "prompt_eval_count": finish.prompt_tokens,
        "eval_count": finish.completion_tokens,
    }


# Chat streams text as {"message": {...}}, generate as {"response": ...}.
_Shape = Callable[[str], dict[str, object]]


def _chat_shape(text: str) -> dict[str, object]:
    return {"message": {"role": "assistant", "content": text}}


def _generate_shape(text: str) -> dict[str, object]:
    return {"response": text}


async def _stream(
    engine: Engine, request: ChatRequest, *, model: str, shape: _Shape
) -> AsyncIterator[Part]:
    started = time.perf_counter_ns()
    try:
        async for item in engine.chat(request):
            head = {"model": model, "created_at": _now()}
            if isinstance(item, Finish):
                last = head | shape("") | {"done": True} | _stats(item, started)
                yield FinalRecord(json_bytes(last), b"", b"\n")
                return
            yield json_bytes(head | shape(item.text) | {"done": False}) + b"\n"
    except EngineError as exc:
        yield json_bytes({"error": exc.message}) + b"\n"


async def _whole(engine: Engine, request: ChatRequest, *, model: str, shape: _Shape) -> bytes:
    started = time.perf_counter_ns()
    text, finish = await complete(engine, request)
    doc = {"model": model, "created_at": _now()} | shape(text)
    return json_bytes(doc | {"done": True} | _stats(finish, started))


def ollama_router(runtime: Runtime) -> APIRouter:
    router = APIRouter()
    engine = runtime.engine

    @router.get("/api/version", tags=["ollama"])
    async def version() -> JSONResponse:
        return JSONResponse({"version": OLLAMA_API_VERSION})

    @router.get("/api/tags", tags=["ollama"])
    async def tags() -> JSONResponse:
        model = engine.model
        name = served_name(model)
        return JSONResponse(
            {
                "models": [
                    {
                        "name": name,
                        "model": name,
                        "modified_at": "1970-01-01T00:00:00Z",
                        "size": model.size,
                        "digest": model.digest,
                        "details": {
                            "format": "gguf" if engine.name == "llama-cpp" else "",
                            "family": model.family,
                            "families": [model.family] if model.family else None,
                            "parameter_size": "",
                            "quantization_level": model.quantization,
                        },
                    }
                ]
            }
        )

    async def answer(request: Request, schema: type[BaseModel], shape: _Shape) -> Response:
        channel: Channel | None = None
        try:
            channel = await open_channel(
                request, keys=runtime.keys, limit=runtime.settings.max_body_bytes
            )
            try:
                body = schema.model_validate_json(channel.body)
            except ValidationError as exc:
                return ollama_error(validation_message(exc)).respond(channel, status_code=400)
            assert isinstance(body, OllamaChatBody | OllamaGenerateBody)
            if isinstance(body, OllamaGenerateBody) and body.raw:
                error = ollama_error("raw prompts are not supported; send a chat or a prompt")
                return error.respond(channel, status_code=400)
            if not _matches(body.model, engine.model):
                error = ollama_error(
                    f"model {body.model!r} not found; this server serves "
                    f"{served_name(engine.model)!r}"
                )
                return error.respond(channel, status_code=404)
            chat = body.to_request()
            empty = not body.prompt if isinstance(body, OllamaGenerateBody) else not body.messages
            if empty:  # Ollama's "load the model" request: nothing to generate
                loaded = {"model": body.model, "created_at": _now()} | shape("")
                return channel.whole(json_bytes(loaded | {"done": True, "done_reason": "load"}))
            if body.stream:
                parts = _stream(engine, chat, model=body.model, shape=shape)
                return channel.stream(parts, media_type=NDJSON_MEDIA_TYPE)
            return channel.whole(await _whole(engine, chat, model=body.model, shape=shape))
        except EngineError as exc:
            status = 502 if "upstream" in exc.code else 500
            return ollama_error(exc.message).respond(channel, status_code=status)
        except CllmError as exc:
            status = 413 if exc.code == "body_too_large" else 400
            return ollama_error(exc.message).respond(channel, status_code=status)

    def body_schema(model: type[BaseModel]) -> dict[str, object]:
        content = {"application/json": {"schema": model.model_json_schema()}}
        return {"requestBody": {"required": True, "content": content}}

    @router.post("/api/chat", tags=["ollama"], openapi_extra=body_schema(OllamaChatBody))
    async def chat(request: Request) -> Response:
        return await answer(request, OllamaChatBody, _chat_shape)

    @router.post("/api/generate", tags=["ollama"], openapi_extra=body_schema(OllamaGenerateBody))
    async def generate(request: Request) -> Response:
        return await answer(request, OllamaGenerateBody, _generate_shape)

    return router
