"""Helpers for the browser tests (tests/ui/): the server + verifier pair they run against,
what a page did, driving the chat page, and an impostor that passes test-held keys off as the
server's. A module of its own (not conftest.py) so that test modules import it by a unique name.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from playwright.sync_api import ConsoleMessage, Locator, Page, Request, Route, expect

from cllm.crypto import HpkeKeyPair, SigningKey, decode_enc_header, open_request, request_aad
from cllm.token import TokenSigner
from serving import ServeProcess

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "ui"
# A model answering on one core of a busy CI machine: generous, never a reason to fail.
TIMEOUT_MS = 90_000
expect.set_options(timeout=TIMEOUT_MS)


@dataclass
class Stack:
    """One ``cllm serve`` and the verifier it names, sharing the simulated TD's state."""

    server: ServeProcess
    verifier_url: str
    verifier_state: Path

    def token_signer(self) -> TokenSigner:
        """The verifier's own token key (from its state directory): lets a test forge what
        only a compromised verifier could, to put hostile text into a validly signed token."""
        return TokenSigner.load_or_create(self.verifier_state)


@dataclass
class Watch:
    """What the page did besides rendering: uncaught errors, console messages, dialogs."""

    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m]


def artifact_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("/")[-1]).strip("_")


def console_text(message: ConsoleMessage) -> str:
    return f"{message.type}: {message.text}"


# --- page helpers ------------------------------------------------------------------------------


def open_ui(page: Page, url: str, *, max_tokens: int = 12) -> None:
    """Open the UI with answers kept short (the setting lives in localStorage, as a user's
    would)."""
    page.add_init_script(f"localStorage.setItem('cllm.maxTokens', '{int(max_tokens)}')")
    page.goto(url)


def badge(page: Page) -> Locator:
    return page.get_by_test_id("attestation-badge")


def settled_badge(page: Page, state: str) -> Locator:
    found = badge(page)
    expect(found).to_have_attribute("data-state", state)
    return found


def ask(page: Page, prompt: str) -> Locator:
    """Send ``prompt`` and wait for its answer to end; returns the answer's locator."""
    before = page.get_by_test_id("message-assistant").count()
    page.get_by_test_id("prompt").fill(prompt)
    page.get_by_test_id("send").click()
    answer = page.get_by_test_id("message-assistant").nth(before)
    expect(answer).to_have_attribute("data-status", re.compile(r"^(done|error|stopped)$"))
    return answer


# --- forging a server the test controls ---------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _compact(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


class Impostor:
    """Keys the test holds, passed off as the server's: the evidence is rewritten to bind them
    and the verifier's token re-signed (with the verifier's real key) to vouch for them. The
    test can then answer the page's sealed chat requests itself, sealed and signed correctly,
    with any content: what a compromised server could send, rendered by the real UI."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.hpke = HpkeKeyPair.generate()
        self.signing = SigningKey.generate()
        self.requests: list[bytes] = []  # opened request bodies

    @property
    def keys(self) -> dict[str, str]:
        return {
            "hpke_key": _b64(self.hpke.public_bytes()),
            "signing_key": _b64(self.signing.public_spki_der()),
        }

    def install(
        self,
        page: Page,
        *,
        answer: str = "",
        claims: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        page.route(re.compile(r"/v1/attestation/report\?"), self._evidence)
        page.route(
            f"{self.stack.verifier_url}/v1/attestation",
            lambda route: self._token(route, claims),
        )
        page.route("**/v1/chat/completions", lambda route: self._answer(route, answer))

    def _evidence(self, route: Route) -> None:
        response = route.fetch()
        doc = response.json()
        doc["binding"].update(self.keys)
        route.fulfill(response=response, json=doc)

    def _token(self, route: Route, edit: Callable[[dict[str, Any]], None] | None) -> None:
        response = route.fetch()
        claims = jwt.decode(response.json()["token"], options={"verify_signature": False})
        for reserved in ("iss", "iat", "exp", "jti"):
            claims.pop(reserved, None)
        claims["keys"] = {**claims["keys"], **self.keys}
        claims["status"] = "warning"
        claims["reasons"] = [
            {"code": "simulated_evidence", "message": "evidence comes from a simulated TD"}
        ]
        if edit is not None:
            edit(claims)
        token = self.stack.token_signer().issue(
            claims, now=int(time.time()), lifetime=300, issuer="cllm-verifier"
        )
        route.fulfill(response=response, json={"token": token})

    def _answer(self, route: Route, text: str) -> None:
        request = route.request
        enc = decode_enc_header(request.headers["x-cllm-hpke-enc"])
        body, sealer = open_request(
            self.hpke,
            enc=enc,
            ciphertext=request.post_data_buffer or b"",
            aad=request_aad("POST", "/v1/chat/completions"),
        )
        self.requests.append(body)
        chunk = {
            "id": "chatcmpl-impostor",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}],
        }
        final = {
            "id": "chatcmpl-impostor",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        signer = self.signing.signer(request_body=body)
        first = b"data: " + _compact(chunk) + b"\n\n"
        signer.update(first)
        signer.update(b"data: ")
        last = b"data: " + signer.sign_record(_compact(final)) + b"\n\ndata: [DONE]\n\n"
        wire = sealer.start() + sealer.seal(first) + sealer.seal_final(last)
        route.fulfill(
            status=200, headers={"content-type": "application/cllm-hpke-chunks"}, body=wire
        )
