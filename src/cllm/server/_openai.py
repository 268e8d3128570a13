"""OpenAI-compatible routes: ``GET /v1/models``, ``GET /v1/models/{id}``,
``POST /v1/chat/completions``."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from cllm.engine import EngineBusyError, FieldRefusedError, Finish, ToolCall, ToolCalls
from cllm.errors import CllmError, EngineError
from cllm.server._answer import (
    ClientGoneError,
    Item,
    capped,
    chain,
    guarded,
    matches,
    started,
)
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

# Engine-level field names as this API calls them.
_FIELDS = {"json_format": "response_format"}


def _usage(finish: Finish) -> dict[str, int]:
    return {
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "total_tokens": finish.prompt_tokens + finish.completion_tokens,
    }


def _calls(calls: tuple[ToolCall, ...], *, indexed: bool) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i, c in enumerate(calls):
        doc: dict[str, object] = {"index": i} if indexed else {}
        doc |= {
            "id": c.id,
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        out.append(doc)
    return out


async def _stream(
    items: AsyncIterator[Item], *, model: str, include_usage: bool
) -> AsyncIterator[Part]:
    head: dict[str, object] = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, object], reason: str | None) -> dict[str, object]:
        return head | {"choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}

    # Each token: only its text is encoded; the rest of the event is fixed bytes.
    before, _, after = sse(chunk({"content": "\x00"}, None)).partition(b'"\\u0000"')
    yield sse(chunk({"role": "assistant", "content": ""}, None))
    try:
        async for item in items:
            if isinstance(item, Finish):
                last = chunk({}, item.reason)
                if include_usage:
                    yield sse(last)
                    last = head | {"choices": [], "usage": _usage(item)}
                yield FinalRecord(json_bytes(last), b"data: ", b"\n\ndata: [DONE]\n\n")
                return
            if isinstance(item, ToolCalls):
                yield sse(chunk({"tool_calls": _calls(item.calls, indexed=True)}, None))
                continue
            yield before + json_bytes(item.text) + after
    except EngineError as exc:
        yield sse(openai_error(exc.message, "server_error", exc.code).body_doc)


async def _whole(items: AsyncIterator[Item], *, model: str) -> bytes:
    texts: list[str] = []
    calls: tuple[ToolCall, ...] = ()
    async for item in items:
        if isinstance(item, ToolCalls):
            calls = item.calls
        elif not isinstance(item, Finish):
            texts.append(item.text)
            continue
        else:
            message: dict[str, object] = {
                "role": "assistant",
                "content": "".join(texts) if texts or not calls else None,
            }
            if calls:
                message["tool_calls"] = _calls(calls, indexed=False)
            return json_bytes(
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "logprobs": None,
                            "finish_reason": item.reason,
                        }
                    ],
                    "usage": _usage(item),
                }
            )
    raise EngineError("the engine ended without finishing", code="engine_failed")


def _model_doc(model_id: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "cllm"}


def openai_router(runtime: Runtime) -> APIRouter:
    router = APIRouter()
    engine = runtime.engine

    @router.get("/v1/models", tags=["openai"])
    async def list_models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [_model_doc(engine.model.id)]})

    @router.get("/v1/models/{model_id:path}", tags=["openai"])
    async def get_model(model_id: str) -> JSONResponse:
        if not matches(model_id, engine.model):
            doc = openai_error(
                f"model {model_id!r} is not served here; this server serves {engine.model.id!r}",
                "invalid_request_error",
                "model_not_found",
            ).body_doc
            return JSONResponse(doc, status_code=404)
        return JSONResponse(_model_doc(engine.model.id))

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
            if not matches(body.model, engine.model):
                error = openai_error(
                    f"model {body.model!r} is not served here; this server serves "
                    f"{engine.model.id!r}",
                    "invalid_request_error",
                    "model_not_found",
                )
                return error.respond(channel, status_code=404)
            chat = capped(body.to_request(), runtime.settings.default_max_tokens)
            first, rest = await started(request, engine, chat)
            items = chain(first, rest)
            if body.stream:
                include_usage = bool(body.stream_options and body.stream_options.include_usage)
                parts = _stream(items, model=body.model, include_usage=include_usage)
                return channel.stream(parts, media_type=SSE_MEDIA_TYPE)
            return channel.whole(await guarded(request, _whole(items, model=body.model)))
        except ClientGoneError:
            return Response(status_code=499)  # nobody reads it; the log line says so
        except FieldRefusedError as exc:
            field = _FIELDS.get(exc.field, exc.field)
            message = exc.message if exc.message.startswith(field) else f"{field}: {exc.message}"
            error = openai_error(message, "invalid_request_error", exc.code, param=field)
            return error.respond(channel, status_code=400)
        except EngineBusyError as exc:
            error = openai_error(exc.message, "rate_limit_error", exc.code)
            headers = {"Retry-After": str(exc.retry_after)}
            return error.respond(channel, status_code=429, headers=headers)
        except EngineError as exc:
            error = openai_error(exc.message, "server_error", exc.code)
            return error.respond(channel, status_code=502 if "upstream" in exc.code else 500)
        except CllmError as exc:
            error = openai_error(exc.message, "invalid_request_error", exc.code)
            return error.respond(channel, status_code=413 if exc.code == "body_too_large" else 400)

    return router
