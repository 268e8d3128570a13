"""Error bodies in each API's own shape: OpenAI ``{"error": {message, type, param, code}}``,
Ollama ``{"error": "message"}``; sealed when the request was."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fastapi.responses import Response
from pydantic import ValidationError

from cllm.server._channel import Channel, json_bytes

__all__ = ["ApiError", "ollama_error", "openai_error", "validation_message"]


@dataclass(frozen=True, slots=True)
class ApiError:
    body_doc: dict[str, object]

    def respond(
        self,
        channel: Channel | None,
        *,
        status_code: int,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        body = json_bytes(self.body_doc)
        if channel is None:
            response = Response(body, status_code=status_code, media_type="application/json")
        else:
            response = channel.plain(body, status_code=status_code, media_type="application/json")
        response.headers.update(headers or {})
        return response


def openai_error(message: str, kind: str, code: str, *, param: str | None = None) -> ApiError:
    return ApiError({"error": {"message": message, "type": kind, "param": param, "code": code}})


def ollama_error(message: str) -> ApiError:
    return ApiError({"error": message})


def validation_message(exc: ValidationError) -> str:
    """pydantic's first complaint, without echoing the input (it may be a prompt)."""
    errors = exc.errors(include_input=False, include_url=False)
    if not errors:
        return "invalid request body"
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    if first["type"] in {"json_invalid", "json_type"}:
        return "the request body is not valid JSON"
    return f"{where}: {first['msg']}"
