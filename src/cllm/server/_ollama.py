"""Ollama-compatible routes: ``GET /api/tags``, ``GET /api/ps``, ``GET /api/version``,
``POST /api/show``, ``POST /api/chat``, ``POST /api/generate`` (NDJSON streaming by default, as
Ollama does)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from cllm.engine import (
    Engine,
    EngineBusyError,
    FieldRefusedError,
    Finish,
    ModelInfo,
    ToolCall,
    ToolCalls,
)
from cllm.errors import CllmError, EngineError
from cllm.server._answer import (
    ClientGoneError,
    Item,
    capped,
    chain,
    guarded,
    matches,
    served_name,
    started,
)
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
from cllm.server._schemas import OllamaChatBody, OllamaGenerateBody, OllamaShowBody

__all__ = ["OLLAMA_API_VERSION", "ollama_router", "served_name"]

# The Ollama API version whose shapes these routes follow.
OLLAMA_API_VERSION: Final = "0.6.3"

# Engine-level field names as this API calls them.
_FIELDS = {"json_format": "format", "num_ctx": "options.num_ctx"}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _stats(finish: Finish, arrived: int) -> dict[str, object]:
    """Ollama's final-record statistics, in nanoseconds, measured."""
    timings = finish.timings
    doc: dict[str, object] = {
        "done_reason": "stop" if finish.reason == "tool_calls" else finish.reason,
        "total_duration": time.perf_counter_ns() - arrived,
        "load_duration": timings.load_ns if timings else 0,
        "prompt_eval_count": finish.prompt_tokens,
        "prompt_eval_duration": timings.prompt_ns if timings else 0,
        "eval_count": finish.completion_tokens,
        "eval_duration": timings.eval_ns if timings else 0,
    }
    return doc


def _ollama_calls(calls: tuple[ToolCall, ...]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i, c in enumerate(calls):
        try:
            arguments = json.loads(c.arguments)
        except ValueError:
            arguments = {}
        out.append({"id": c.id, "function": {"index": i, "name": c.name, "arguments": arguments}})
    return out


# Chat streams text as {"message": {...}}, generate as {"response": ...}.
_Shape = Callable[[str], dict[str, object]]


def _chat_shape(text: str) -> dict[str, object]:
    return {"message": {"role": "assistant", "content": text}}


def _generate_shape(text: str) -> dict[str, object]:
    return {"response": text}


def _with_calls(doc: dict[str, object], calls: tuple[ToolCall, ...]) -> dict[str, object]:
    message = doc.get("message")
    if calls and isinstance(message, dict):
        message["tool_calls"] = _ollama_calls(calls)
    return doc


async def _stream(
    items: AsyncIterator[Item], *, model: str, shape: _Shape, arrived: int
) -> AsyncIterator[Part]:
    try:
        async for item in items:
            head = {"model": model, "created_at": _now()}
            if isinstance(item, Finish):
                last = head | shape("") | {"done": True} | _stats(item, arrived)
                yield FinalRecord(json_bytes(last), b"", b"\n")
                return
            if isinstance(item, ToolCalls):
                doc = _with_calls(head | shape("") | {"done": False}, item.calls)
                yield json_bytes(doc) + b"\n"
                continue
            yield json_bytes(head | shape(item.text) | {"done": False}) + b"\n"
    except EngineError as exc:
        yield json_bytes({"error": exc.message}) + b"\n"


async def _whole(items: AsyncIterator[Item], *, model: str, shape: _Shape, arrived: int) -> bytes:
    texts: list[str] = []
    calls: tuple[ToolCall, ...] = ()
    async for item in items:
        if isinstance(item, ToolCalls):
            calls = item.calls
        elif isinstance(item, Finish):
            doc = {"model": model, "created_at": _now()} | shape("".join(texts))
            doc = _with_calls(doc, calls)
            return json_bytes(doc | {"done": True} | _stats(item, arrived))
        else:
            texts.append(item.text)
    raise EngineError("the engine ended without finishing", code="engine_failed")


def _details(engine: Engine) -> dict[str, object]:
    model = engine.model
    return {
        "parent_model": "",
        "format": "gguf" if engine.name == "llama-cpp" else "",
        "family": model.family,
        "families": [model.family] if model.family else None,
        "parameter_size": model.parameter_size,
        "quantization_level": model.quantization,
    }


def _capabilities(model: ModelInfo) -> list[str]:
    return ["completion", "tools"] if model.supports_tools else ["completion"]


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
                        "details": _details(engine),
                    }
                ]
            }
        )

    @router.get("/api/ps", tags=["ollama"])
    async def ps() -> JSONResponse:
        model = engine.model
        name = served_name(model)
        loaded = [
            {
                "name": name,
                "model": name,
                "size": model.size,
                "digest": model.digest,
                "details": _details(engine),
                # Loaded for the server's whole life: no expiry (Ollama's zero time).
                "expires_at": "0001-01-01T00:00:00Z",
                "size_vram": 0,
                "context_length": model.context_length,
            }
        ]
        return JSONResponse({"models": loaded if await engine.ready() else []})

    @router.post("/api/show", tags=["ollama"])
    async def show(request: Request) -> Response:
        channel: Channel | None = None
        try:
            channel = await open_channel(
                request, keys=runtime.keys, limit=runtime.settings.max_body_bytes
            )
            body = OllamaShowBody.model_validate_json(channel.body)
        except ValidationError as exc:
            return ollama_error(validation_message(exc)).respond(channel, status_code=400)
        except CllmError as exc:
            status = 413 if exc.code == "body_too_large" else 400
            return ollama_error(exc.message).respond(channel, status_code=status)
        requested = body.model or body.name
        model = engine.model
        if not requested or not matches(requested, model):
            message = f"model {requested!r} not found; this server serves {served_name(model)!r}"
            return ollama_error(message).respond(channel, status_code=404)
        info = dict(model.extra)
        if model.context_length and model.family:
            info.setdefault(f"{model.family}.context_length", model.context_length)
        template = model.template
        modelfile = (
            f"# served by cllm serve ({engine.name}); measured as {model.digest or 'upstream'}\n"
            f"FROM {served_name(model)}\n"
        )
        if template:
            modelfile += f'TEMPLATE """{template}"""\n'
        cap = runtime.settings.default_max_tokens
        parameters = f"num_ctx {model.context_length}\nnum_predict {cap}"
        doc = {
            "license": str(info.get("general.license", "")),
            "modelfile": modelfile,
            "parameters": parameters,
            "template": template,
            "details": _details(engine),
            "model_info": info,
            "capabilities": _capabilities(model),
            "modified_at": "1970-01-01T00:00:00Z",
        }
        return channel.plain(json_bytes(doc), status_code=200, media_type="application/json")

    async def answer(request: Request, schema: type[BaseModel], shape: _Shape) -> Response:
        arrived = time.perf_counter_ns()
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
            if not matches(body.model, engine.model):
                error = ollama_error(
                    f"model {body.model!r} not found; this server serves "
                    f"{served_name(engine.model)!r}"
                )
                return error.respond(channel, status_code=404)
            chat = capped(body.to_request(), runtime.settings.default_max_tokens)
            empty = not body.prompt if isinstance(body, OllamaGenerateBody) else not body.messages
            if empty:  # Ollama's "load the model" request: nothing to generate
                loaded = {"model": body.model, "created_at": _now()} | shape("")
                return channel.whole(json_bytes(loaded | {"done": True, "done_reason": "load"}))
            first, rest = await started(request, engine, chat)
            items = chain(first, rest)
            if body.stream is not False:
                parts = _stream(items, model=body.model, shape=shape, arrived=arrived)
                return channel.stream(parts, media_type=NDJSON_MEDIA_TYPE)
            whole = _whole(items, model=body.model, shape=shape, arrived=arrived)
            return channel.whole(await guarded(request, whole))
        except ClientGoneError:
            return Response(status_code=499)  # nobody reads it; the log line says so
        except FieldRefusedError as exc:
            field = _FIELDS.get(exc.field, exc.field)
            message = exc.message if exc.message.startswith(field) else f"{field}: {exc.message}"
            return ollama_error(message).respond(channel, status_code=400)
        except EngineBusyError as exc:
            headers = {"Retry-After": str(exc.retry_after)}
            return ollama_error(exc.message).respond(channel, status_code=429, headers=headers)
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
