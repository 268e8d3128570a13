"""The web UI, served from the very bytes that were measured as ``cllm.ui``.

The assets are read once at start (``cllm.measure.snapshot_directory``) and answered from
memory: a file changed or swapped on disk afterwards is never served, so the UI a browser runs
is the one RTMR3 names.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote

from starlette.types import Receive, Scope, Send

from cllm.measure import DirectorySnapshot

__all__ = ["MemoryAssets"]

_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
}


def _content_type(path: str) -> str:
    dot = path.rfind(".")
    suffix = path[dot:].lower() if dot >= 0 else ""
    return _TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"


class MemoryAssets:
    """Pure ASGI: GET/HEAD of the snapshot's files; ``/`` and directories give their
    ``index.html``; anything else is 404 (405 for other methods)."""

    def __init__(self, snapshot: DirectorySnapshot) -> None:
        self._files: Mapping[str, bytes] = dict(snapshot.files)
        self._etags = {
            path: '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
            for path, data in self._files.items()
        }

    def _lookup(self, path: str) -> str | None:
        relative = unquote(path).lstrip("/")
        for candidate in (relative, f"{relative}/index.html" if relative else "index.html"):
            candidate = candidate.replace("//", "/")
            if candidate in self._files:
                return candidate
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        found = self._lookup(scope["path"])
        if method not in ("GET", "HEAD"):
            status, body, headers = 405, b"Method Not Allowed", [(b"allow", b"GET, HEAD")]
            content_type = "text/plain; charset=utf-8"
        elif found is None:
            status, body, headers = 404, b"Not Found", []
            content_type = "text/plain; charset=utf-8"
        else:
            status, body = 200, self._files[found]
            content_type = _content_type(found)
            headers = [(b"etag", self._etags[found].encode())]
        headers += [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
