"""The proxy application: OpenAI and Ollama APIs on the user's machine, each request forwarded
to the attested server through the SDK's sealed transport, the verdict at ``/cllm/status`` and
the UI from the user's own installed package at ``/``.

What a request goes through, in order (each step fails closed, nothing is forwarded after a
failure):

1. the Host header names the listen address (no DNS rebinding): else 421 `host_not_allowed`;
2. the method is GET or POST (only a POST body can be sealed): else 405 `method_not_allowed`;
3. a POST body is JSON (no cross-site "simple" request), at most 16 MiB: else 415 / 413;
4. a verdict is in force: verified when there is none, it expired, or the last request failed:
   else 503 with the verdict's code (`attestation_failed`, ...) and reasons;
5. the transport seals the body to the attested HPKE key (and checks the TLS key when the
   evidence binds one: else 503 `tls_binding_mismatch`);
6. the answer is opened record by record and its signature checked: else 502, or, once a
   streamed answer has begun, one more record in the API's error shape, and the end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cllm import __version__
from cllm._internal.net import is_loopback_host
from cllm.client import AsyncAttestedTransport, AttestedSession, Verification
from cllm.errors import AttestationError, CllmError, CryptoError
from cllm.proxy._errors import error_record, error_response

__all__ = ["ProxySettings", "create_proxy_app"]

_log = logging.getLogger(__name__)

MAX_BODY: Final = 16 * 1024 * 1024
# Request headers a client's own request passes on to the server; everything else (cookies,
# a browser's origin, tracing headers) stays on this machine.
_FORWARDED: Final = ("authorization", "accept")

# The locally served UI talks to this proxy only: the verifier and keys are the proxy's.
UI_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_UI_HEADERS: Final = (
    (b"content-security-policy", UI_CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
)


@dataclass(frozen=True, slots=True)
class ProxySettings:
    upstream: str  # the cllm server's base URL
    listen_host: str
    listen_port: int
    api_key: str | None = None  # sent as Bearer when the client sends none
    static_dir: Path | None = None  # the UI (None: not served)


def _stream_kind(path: str, body: bytes) -> str | None:
    """The plaintext media type of a successful answer to ``path`` with ``body``: SSE for a
    streamed OpenAI chat, NDJSON for Ollama's chat and generate (streamed unless
    ``"stream": false``), else None (one JSON document)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if path == "/v1/chat/completions" and doc.get("stream") is True:
        return "text/event-stream"
    if path in ("/api/chat", "/api/generate") and doc.get("stream", True) is not False:
        return "application/x-ndjson"
    return None


class _HostCheck:
    """Pure ASGI: requests must name this proxy's own address in ``Host``. A web page whose
    name an attacker re-points at 127.0.0.1 (DNS rebinding) sends its own name and is refused."""

    def __init__(self, app: ASGIApp, *, allowed: frozenset[str]) -> None:
        self._app = app
        self._allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = ""
            for name, value in scope.get("headers") or ():
                if name == b"host":
                    host = bytes(value).decode("latin-1").lower()
            if host not in self._allowed:
                body = json.dumps(
                    {"error": {"message": "unknown Host", "code": "host_not_allowed"}}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 421,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self._app(scope, receive, send)


def _allowed_hosts(settings: ProxySettings) -> frozenset[str]:
    names = {settings.listen_host.lower(), "127.0.0.1", "localhost", "::1"}
    formatted = {f"[{n}]" if ":" in n and not n.startswith("[") else n for n in names}
    return frozenset(f"{n}:{settings.listen_port}" for n in formatted)


class _UiHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *_UI_HEADERS]
            await send(message)

        await self._app(scope, receive, with_headers)


class Gateway:
    """One upstream server, one attested session, shared by every request."""

    def __init__(self, settings: ProxySettings, session: AttestedSession) -> None:
        self.settings = settings
        self.session = session
        self.http = httpx.AsyncClient(
            base_url=settings.upstream.rstrip("/"),
            transport=AsyncAttestedTransport(session),
            timeout=httpx.Timeout(connect=30.0, read=None, write=60.0, pool=60.0),
        )

    async def status(self, *, refresh: bool) -> Verification:
        if refresh:
            return await asyncio.to_thread(self.session.verify)
        return await asyncio.to_thread(self.session.current)

    def _headers(self, request: Request) -> dict[str, str]:
        headers = {n: request.headers[n] for n in _FORWARDED if n in request.headers}
        if "authorization" not in headers and self.settings.api_key:
            headers["authorization"] = f"Bearer {self.settings.api_key}"
        if request.method == "POST":
            headers["content-type"] = "application/json"
        return headers

    async def forward(self, request: Request) -> Response:
        path = request.url.path
        if request.method not in ("GET", "POST"):
            return error_response(
                path,
                CllmError(f"{request.method} is not forwarded", code="method_not_allowed"),
                status_code=405,
            )
        body = b""
        if request.method == "POST":
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                error = CllmError("send the request as application/json", code="unsupported_media")
                return error_response(path, error, status_code=415)
            read = await _read_limited(request)
            if read is None:
                error = CllmError(f"request body over {MAX_BODY} bytes", code="body_too_large")
                return error_response(path, error, status_code=413)
            body = read
        outgoing = self.http.build_request(
            request.method,
            path,
            params=request.url.query or None,
            content=body if request.method == "POST" else None,
            headers=self._headers(request),
        )
        try:
            response = await self.http.send(outgoing, stream=True)
        except AttestationError as exc:
            self.session.invalidate()
            _log.warning("not forwarded: %s", exc.code)
            return error_response(path, exc, status_code=503)
        except CryptoError as exc:
            self.session.invalidate()
            _log.warning("answer refused: %s", exc.code)
            return error_response(path, exc, status_code=502)
        except httpx.HTTPError as exc:
            self.session.invalidate()
            error = CllmError(
                f"cannot reach the server: {type(exc).__name__}", code="server_unreachable"
            )
            return error_response(path, error, status_code=502)
        streamed = _stream_kind(path, body) if response.status_code == 200 else None
        if streamed is None:
            return await self._whole(path, response)
        return StreamingResponse(
            self._pieces(path, response, sse=streamed == "text/event-stream"),
            status_code=response.status_code,
            media_type=streamed,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _whole(self, path: str, response: httpx.Response) -> Response:
        """A one-document answer, held until its signature has been checked."""
        try:
            content = await response.aread()
        except CryptoError as exc:
            self.session.invalidate()
            return error_response(path, exc, status_code=502)
        except httpx.HTTPError as exc:
            self.session.invalidate()
            error = CllmError(f"the answer broke off: {type(exc).__name__}", code="answer_broken")
            return error_response(path, error, status_code=502)
        finally:
            await response.aclose()
        media = response.headers.get("content-type", "application/json").split(";")[0]
        return Response(
            content,
            status_code=response.status_code,
            media_type=media,
            headers={"Cache-Control": "no-store"},
        )

    async def _pieces(
        self, path: str, response: httpx.Response, *, sse: bool
    ) -> AsyncIterator[bytes]:
        """A streamed answer, record by record as each opens; the record carrying the
        signature is released only once the signature checks (AnswerStream)."""
        try:
            async for piece in response.aiter_raw():
                yield piece
        except CryptoError as exc:
            self.session.invalidate()
            _log.warning("streamed answer refused: %s", exc.code)
            yield error_record(path, exc, sse=sse)
        except httpx.HTTPError as exc:
            self.session.invalidate()
            error = CllmError(f"the answer broke off: {type(exc).__name__}", code="answer_broken")
            yield error_record(path, error, sse=sse)
        finally:
            await response.aclose()


async def _read_limited(request: Request) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_proxy_app(
    settings: ProxySettings,
    session: AttestedSession,
    *,
    clock: Callable[[], float] = time.time,
) -> tuple[ASGIApp, Gateway]:
    """The ASGI app for ``cllm proxy`` and its gateway (for status and tests)."""
    gateway = Gateway(settings, session)

    async def status(request: Request) -> Response:
        refresh = request.query_params.get("refresh") in ("1", "true")
        verification = await gateway.status(refresh=refresh)
        doc: dict[str, Any] = verification.to_json()
        doc["proxy"] = {
            "version": __version__,
            "server": settings.upstream,
            "attestations": session.attestations,
            "now": int(clock()),
        }
        return JSONResponse(doc, headers={"Cache-Control": "no-store"})

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "proxy": True, "server": settings.upstream})

    async def forward(request: Request) -> Response:
        return await gateway.forward(request)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    routes: list[Any] = [
        Route("/cllm/status", status, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/{rest:path}", forward, methods=methods),
        Route("/api/{rest:path}", forward, methods=methods),
    ]
    if settings.static_dir is not None and (settings.static_dir / "index.html").is_file():
        ui = _UiHeaders(StaticFiles(directory=settings.static_dir, html=True))
        routes.append(Mount("/", app=ui, name="ui"))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await gateway.http.aclose()

    app: ASGIApp = Starlette(routes=routes, lifespan=lifespan)
    if is_loopback_host(settings.listen_host):
        app = _HostCheck(app, allowed=_allowed_hosts(settings))
    return app, gateway
