"""Answers for requests no route takes, under ``/v1/`` and ``/api/``: 404 (no such route) or
405 (the route exists, not with this method), in that API's own error shape, before the UI's
catch-all could answer them as files. And CORS, off unless origins are configured.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from cllm.crypto import ENC_HEADER, ENCRYPTION_HEADER

__all__ = ["ApiFallback", "add_cors"]

_PREFIXES: Final = ("/v1/", "/api/")

# Routes real clients try that this server does not offer, and why.
_NOT_OFFERED: Final = {
    "/v1/embeddings": "the served model offers no embeddings (it is a chat model)",
    "/api/embed": "the served model offers no embeddings (it is a chat model)",
    "/api/embeddings": "the served model offers no embeddings (it is a chat model)",
    "/v1/completions": "use /v1/chat/completions",
    "/v1/responses": "use /v1/chat/completions",
    "/api/pull": "the served model is fixed and measured when the server starts",
    "/api/push": "the served model is fixed and measured when the server starts",
    "/api/create": "the served model is fixed and measured when the server starts",
    "/api/copy": "the served model is fixed and measured when the server starts",
    "/api/delete": "the served model is fixed and measured when the server starts",
}


def _error(path: str, status: int, message: str, code: str) -> bytes:
    if path.startswith("/api"):
        return json.dumps({"error": message}).encode()
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return json.dumps({"error": error}).encode()


class ApiFallback:
    """Pure ASGI, inside the app's middleware: API paths that no route fully matches."""

    def __init__(self, app: ASGIApp, *, routes_of: FastAPI) -> None:
        self._app = app
        self._routes = routes_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path.startswith(_PREFIXES) or path in {"/v1", "/api"}):
            await self._app(scope, receive, send)
            return
        allowed: list[str] = []
        for route in self._routes.router.routes:
            if isinstance(route, Mount) and route.path in {"", "/"}:
                continue  # the UI's catch-all
            match, _ = route.matches(scope)
            if match is Match.FULL:
                await self._app(scope, receive, send)
                return
            if match is Match.PARTIAL:
                allowed += sorted(getattr(route, "methods", None) or ())
        method = scope["method"]
        headers = [(b"content-type", b"application/json")]
        if allowed:
            status = 405
            message = f"{method} is not allowed on {path}; use {', '.join(allowed)}"
            body = _error(path, status, message, "method_not_allowed")
            headers.append((b"allow", ", ".join(allowed).encode()))
        else:
            status = 404
            why = _NOT_OFFERED.get(path.rstrip("/"), "no such route on this server")
            body = _error(path, status, f"{method} {path} is not served here: {why}", "not_found")
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def add_cors(app: FastAPI, origins: Sequence[str]) -> None:
    """Browsers may call the APIs from ``origins`` only; with none, no CORS headers at all
    (same-origin pages, such as the built-in UI, need none)."""
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", ENCRYPTION_HEADER, ENC_HEADER],
        expose_headers=["Retry-After"],
        max_age=600,
    )
