"""What a web page must not be able to make ``cllm serve`` do.

* A cross-origin page may send "simple" requests without asking (no CORS preflight):
  ``text/plain``, ``application/x-www-form-urlencoded``, ``multipart/form-data`` or no content
  type at all. A body route therefore takes only the type it parses: ``application/json``, or
  ``application/cllm-hpke`` for a sealed request (``X-Cllm-Encryption``, a header a page cannot
  add without a preflight). Anything else is 415 before the body is read, with one exception:
  no content type at all from a client that is not a browser (no ``Origin``, no ``Sec-Fetch-*``
  header: browsers send these on every POST, pages cannot remove them), since real API clients
  (litellm's Ollama client, for one) post JSON without saying so, as Ollama accepts.
* DNS rebinding makes a page's own origin resolve to this server, so the browser lets it read
  the answers. With allowed host names configured, a request naming any other ``Host`` is 403.

Errors come in the API's own shape: Ollama's under ``/api/``, OpenAI's elsewhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from cllm._internal.net import normalise_host
from cllm.crypto import ENCRYPTION_HEADER, REQUEST_CONTENT_TYPE

__all__ = ["RequestGuard", "error_body", "host_allowed", "normalise_host"]

_log = logging.getLogger(__name__)

_JSON = "application/json"
_SEALED = REQUEST_CONTENT_TYPE
_ENCRYPTION = ENCRYPTION_HEADER.lower().encode()
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """``host`` (normalised) is one of ``allowed`` or under one of its ``*.`` entries."""
    for entry in allowed:
        if entry.startswith("*."):
            if host.endswith(entry[1:]):
                return True
        elif host == entry:
            return True
    return False


def error_body(path: str, message: str, *, code: str, kind: str = "invalid_request_error") -> bytes:
    doc: object
    if path.startswith("/api/"):
        doc = {"error": message}
    else:
        doc = {"error": {"message": message, "type": kind, "code": code}}
    return json.dumps(doc).encode()


class RequestGuard:
    """Pure ASGI, outside everything else: allowed ``Host`` names (when configured), then the
    content type of requests with a body on routes that take one (``routes``: the app's)."""

    def __init__(
        self, app: ASGIApp, *, allowed_hosts: Sequence[str], routes: Sequence[BaseRoute]
    ) -> None:
        self._app = app
        self._allowed = tuple(allowed_hosts)
        self._routes = routes
        self._body_routes: list[Route] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or ())
        path: str = scope["path"]
        if self._allowed and not self._host_ok(headers):
            message = "this server does not answer for that Host name"
            await self._refuse(scope, send, 403, error_body(path, message, code="host_not_allowed"))
            return
        method: str = scope["method"]
        if method not in _BODYLESS and self._takes_body(method, path):
            expected = _expected_type(headers)
            declared = _media_type(headers)
            if declared is None and expected == _JSON and _untyped_from_a_program(headers):
                declared = _JSON
            if declared != expected:
                message = f"this request must be sent with Content-Type: {expected}"
                body = error_body(path, message, code="unsupported_media_type")
                await self._refuse(scope, send, 415, body)
                return
        await self._app(scope, receive, send)

    def _host_ok(self, headers: list[tuple[bytes, bytes]]) -> bool:
        hosts = [value for name, value in headers if name == b"host"]
        if len(hosts) != 1:
            return False
        host = normalise_host(hosts[0].decode("latin-1"))
        return host is not None and "*" not in host and host_allowed(host, self._allowed)

    def _takes_body(self, method: str, path: str) -> bool:
        if self._body_routes is None:  # routes are all in place by the first request
            self._body_routes = [
                route
                for route in self._routes
                if isinstance(route, Route) and route.methods and route.methods - _BODYLESS
            ]
        return any(
            route.methods is not None
            and method in route.methods
            and route.path_regex.match(path) is not None
            for route in self._body_routes
        )

    async def _refuse(self, scope: Scope, send: Send, status: int, body: bytes) -> None:
        _log.info("%s %s -> %d (refused before the app)", scope["method"], scope["path"], status)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _expected_type(headers: list[tuple[bytes, bytes]]) -> str:
    return _SEALED if any(name == _ENCRYPTION for name, _ in headers) else _JSON


def _untyped_from_a_program(headers: list[tuple[bytes, bytes]]) -> bool:
    """No Content-Type header at all, and none of the headers every browser adds to a POST."""
    names = {name for name, _ in headers}
    browser = b"origin" in names or any(name.startswith(b"sec-fetch-") for name in names)
    return b"content-type" not in names and not browser


def _media_type(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The one Content-Type's media type, lower case, without parameters; ``None`` when there
    is none or more than one."""
    found = [value for name, value in headers if name == b"content-type"]
    if len(found) != 1:
        return None
    return found[0].decode("latin-1").partition(";")[0].strip().lower()
