"""OpenAI-compatible routes: ``GET /v1/models``, ``POST /v1/chat/completions``."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from cllm.engine import ChatRequest, Engine, Finish, complete
from cllm.errors import CllmError, EngineError
from cllm.server._channel import (
    SSE_MEDIA_TYPE,
    Channel,
    FinalRecord,
    Part,
    json_bytes,
    open_channel,
    sse,
)
from cllm.server._errors import openai_error, validation_message
from cllm.server._runtime import Runtime
from cllm.server._schemas import OpenAIChatBody

__all__ = ["openai_router"]


def _usage(finish: Finish) -> dict[str, int]:
    return {
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "total_tokens": finish.prompt_tokens + finish.completion_tokens,
    }


async def _stream(
    engine: Engine, request: ChatRequest, *, model: str, include_usage: bool
) -> AsyncIterator[Part]:
    head: dict[str, object] = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, str], reason: str | None) -> dict[str, object]:
        return head | {"choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}

    # Each token: only its text is encoded; the rest of the event is fixed bytes.
    before, _, after = sse(chunk({"content": "\x00"}, None)).partition(b'"\\u0000"')
    yield sse(chunk({"role": "assistant", "content": ""}, None))
    try:
        async for item in engine.chat(request):
            if isinstance(item, Finish):
                last = chunk({}, item.reason)
                if include_usage:
                    yield sse(last)
                    last = head | {"choices": [], "usage": _usage(item)}
                yield FinalRecord(json_bytes(last), b"data: ", b"\n\ndata: [DONE]\n\n")
                return
            yield before + json_bytes(item.text) + after
    except EngineError as exc:
        yield sse(openai_error(exc.message, "server_error", exc.code).body_doc)


async def _whole(engine: Engine, request: ChatRequest, *, model: str) -> bytes:
    text, finish = await complete(engine, request)
    return json_bytes(
        {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish.reason,
                }
            ],
            "usage": _usage(finish),
        }
    )


def openai_router(runtime: Runtime) -> APIRouter:
    router = APIRouter()
    engine = runtime.engine

    @router.get("/v1/models", tags=["openai"])
    async def list_models() -> JSONResponse:
        model = engine.model
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": model.id, "object": "model", "created": 0, "owned_by": "cllm"}],
            }
        )

    @router.post(
        "/v1/chat/completions",
        tags=["openai"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": OpenAIChatBody.model_json_schema()},
                },
            }
        },
    )
    async def chat_completions(request: Request) -> Response:
        channel: Channel | None = None
        try:
            channel = await open_channel(
                request, keys=runtime.keys, limit=runtime.settings.max_body_bytes
            )
            try:
                body = OpenAIChatBody.model_validate_json(channel.body)
            except ValidationError as exc:
                error = openai_error(
                    validation_message(exc), "invalid_request_error", "invalid_request"
                )
                return error.respond(channel, status_code=400)
            if body.model != engine.model.id:
                error = openai_error(
                    f"model {body.model!r} is not served here; this server serves "
                    f"{engine.model.id!r}",
                    "invalid_request_error",
                    "model_not_found",
                )
                return error.respond(channel, status_code=404)
            chat = body.to_request()
            if body.stream:
                include_usage = bool(body.stream_options and body.stream_options.include_usage)
                parts = _stream(engine, chat, model=body.model, include_usage=include_usage)
                return channel.stream(parts, media_type=SSE_MEDIA_TYPE)
            return channel.whole(await _whole(engine, chat, model=body.model))
        except EngineError as exc:
            error = openai_error(exc.message, "server_error", exc.code)
            return error.respond(channel, status_code=502 if "upstream" in exc.code else 500)
        except CllmError as exc:
            error = openai_error(exc.message, "invalid_request_error", exc.code)
            return error.respond(channel, status_code=413 if exc.code == "body_too_large" else 400)

    return router
