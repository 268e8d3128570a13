"""The ``cllm serve`` application: inference APIs, attestation, health, and the measured UI."""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cllm import __version__
from cllm.server._attestation import attestation_router
from cllm.server._fallback import ApiFallback, add_cors
from cllm.server._guard import RequestGuard
from cllm.server._ollama import ollama_router
from cllm.server._openai import openai_router
from cllm.server._runtime import Runtime
from cllm.server._ui import MemoryAssets

__all__ = ["create_app"]

_log = logging.getLogger(__name__)

_PROTECTED = ("/v1/models", "/v1/chat/", "/api/")


class _Gate:
    """Pure ASGI: bearer auth on the inference routes when an API key is set, and one log line
    per request with an id, route, status, sizes and time, never a body."""

    def __init__(self, app: ASGIApp, *, api_key: str | None) -> None:
        self._app = app
        self._key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path: str = scope["path"]
        if self._key is not None and path.startswith(_PROTECTED) and not self._authorised(scope):
            await self._refuse(path, send)
            return
        request_id = uuid.uuid4().hex[:12]
        started = time.perf_counter()
        status = 0
        sent = 0

        async def tracking_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self._app(scope, receive, tracking_send)
        finally:
            _log.info(
                "%s %s %s -> %d, %d bytes out, %.1f ms",
                request_id,
                scope["method"],
                path,
                status,
                sent,
                (time.perf_counter() - started) * 1000,
            )

    def _authorised(self, scope: Scope) -> bool:
        assert self._key is not None
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                scheme, _, token = bytes(value).partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token, self._key)
        return False

    async def _refuse(self, path: str, send: Send) -> None:
        message = "a valid API key is required (Authorization: Bearer <key>)"
        doc: object
        if path.startswith("/api/"):
            doc = {"error": message}
        else:
            doc = {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            }
        body = json.dumps(doc).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# The UI runs only its own bundled script (markdown from the model cannot add any), loads
# nothing from elsewhere (an answer cannot beacon out through an image), and talks to this
# server and to whichever verifier the user chose (connect-src).
UI_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' http: https:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_UI_HEADERS = (
    (b"content-security-policy", UI_CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
)


class _UiHeaders:
    """Pure ASGI: the static UI's responses carry the CSP and hardening headers above."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *_UI_HEADERS]
            await send(message)

        await self._app(scope, receive, with_headers)


def create_app(runtime: Runtime, *, static_dir: Path | None = None) -> FastAPI:
    """The app for one running server. The UI is served only when it was measured, from the
    bytes measured (``runtime.ui_snapshot``); ``static_dir`` is accepted for callers and
    unused: nothing is read from disk after start."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.engine.start()
        try:
            yield
        finally:
            await runtime.engine.aclose()

    app = FastAPI(
        title="cllm serve",
        version=__version__,
        description="Confidential LLM inference: OpenAI- and Ollama-compatible APIs, attestation.",
        lifespan=lifespan,
    )
    app.include_router(attestation_router(runtime))
    app.include_router(openai_router(runtime))
    app.include_router(ollama_router(runtime))

    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        engine = runtime.engine
        ready = await engine.ready()
        doc = {
            "status": "ok" if ready else "engine_unavailable",
            "tee": runtime.tee.evidence_tee,
            "simulated": runtime.simulated,
            "engine": engine.name,
            "model": engine.model.id,
            "verifier": runtime.settings.verifier,
            "api_key_required": runtime.settings.api_key is not None,
        }
        return JSONResponse(doc, status_code=200 if ready else 503)

    if runtime.ui_snapshot is not None:
        # The bytes measured as cllm.ui, from memory: a file swapped on disk is never served.
        app.mount("/", _UiHeaders(MemoryAssets(runtime.ui_snapshot)), name="ui")
    app.add_middleware(ApiFallback, routes_of=app)  # API-shaped 404/405 under /v1/, /api/
    key = runtime.settings.api_key
    app.add_middleware(_Gate, api_key=key.get_secret_value() if key else None)
    # Host names and content types are checked before the API key and the routes run.
    app.add_middleware(
        RequestGuard, allowed_hosts=runtime.settings.allowed_hosts, routes=app.router.routes
    )
    add_cors(app, runtime.settings.cors_origins)  # outermost: preflights carry no API key
    return app
