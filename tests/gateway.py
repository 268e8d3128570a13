"""Real ``cllm proxy`` processes for tests, with the user's trust configuration in a temporary
XDG config directory (never the real one), and small servers a test controls: a fake cllm
server with no TEE that records every byte it receives, and a verifier that signs whatever the
test tells it to (a compromised or self-chosen verifier)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from cllm.token import TokenSigner
from serving import free_port

_LAUNCH = "import sys; from cllm.cli import main; sys.exit(main())"


@dataclass
class ProxyProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = httpx.get(f"{self.url}/cllm/status", timeout=120).json()
        return doc

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_proxy(
    server_url: str,
    args: list[str],
    *,
    config_home: Path,
    log_path: Path,
    timeout: float = 120.0,
) -> ProxyProcess:
    """``cllm proxy SERVER --listen 127.0.0.1:<free> *args``, with ``XDG_CONFIG_HOME`` set to
    ``config_home``; ready when its ``/healthz`` answers (after its first verification)."""
    port = free_port()
    command = [
        sys.executable,
        "-c",
        _LAUNCH,
        "-v",
        "proxy",
        server_url,
        "--listen",
        f"127.0.0.1:{port}",
        *args,
    ]
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home), "COLUMNS": "200"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    proxy = ProxyProcess(process, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cllm proxy exited with {process.returncode}:\n{proxy.log()}")
        try:
            if httpx.get(f"{proxy.url}/healthz", timeout=1).status_code == 200:
                return proxy
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proxy.stop()
    raise RuntimeError(f"cllm proxy did not start:\n{proxy.log()}")


# --- small servers a test controls ------------------------------------------------------------

Handler = Callable[[str, str, bytes], tuple[int, dict[str, str], bytes]]


@dataclass
class LittleServer:
    """A threaded HTTP server on loopback: ``handle(method, path, body)`` answers; every
    request line, header block and body it receives is kept in ``received``."""

    handle: Handler
    received: bytearray = field(default_factory=bytearray)
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LittleServer:
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def do_OPTIONS(self) -> None:  # a browser's CORS preflight
                self.send_response(204)
                self.send_header("access-control-allow-origin", "*")
                self.send_header("access-control-allow-methods", "GET, POST")
                self.send_header("access-control-allow-headers", "content-type")
                self.send_header("content-length", "0")
                self.end_headers()

            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.received += self.requestline.encode() + b"\n"
                outer.received += str(self.headers).encode()
                outer.received += body
                status, headers, content = outer.handle(self.command, self.path, body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(content)))
                self.send_header("access-control-allow-origin", "*")
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = _any  # noqa: N815

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


def json_answer(doc: object, status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json"}, json.dumps(doc).encode()


def signing_verifier(
    signer: TokenSigner | list[TokenSigner], edit: Callable[[dict[str, Any]], None]
) -> LittleServer:
    """A "verifier" that vouches for whatever evidence it gets: the keys and nonce are the
    evidence's own (so a client's binding checks pass), the rest is what ``edit`` writes.
    Given a list, it signs with (and publishes) the last key in it: a test can change keys."""
    signers = signer if isinstance(signer, list) else [signer]

    def handle(method: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if path == "/.well-known/jwks.json":
            return json_answer(signers[-1].jwks())
        if path == "/healthz":
            return json_answer({"status": "ok"})
        if method == "POST" and path == "/v1/attestation":
            request = json.loads(body)
            evidence = request["evidence"]
            claims: dict[str, Any] = {
                "status": "affirming",
                "reasons": [],
                "nonce": request["nonce"],
                "tee": "tdx",
                "simulated": False,
                "tcb": {"status": "UpToDate", "advisory_ids": [], "collateral_expires": 0},
                "td": {},
                "components": [],
                "keys": evidence["binding"],
                "policy": {"id": "default", "sha256": "0" * 64},
                # A self-vouching "verifier" claims whatever turns a badge green: pinned
                # software and prompts that stay inside too.
                "reference": {
                    "boot_chain": True,
                    "components": True,
                    "pinned_types": ["cllm.config", "cllm.engine", "cllm.model", "cllm.package"],
                    "releases": [],
                },
                "upstream": {"scope": "embedded", "host": None},
            }
            edit(claims)
            token = signers[-1].issue(claims, now=int(time.time()), lifetime=300, issuer="fake")
            return json_answer({"token": token})
        return json_answer({"error": "not found"}, 404)

    return LittleServer(handle)
