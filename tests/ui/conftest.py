"""Browser tests of the web UI: Debian's chromium, driven by Playwright and launched by path
(never a browser downloaded by a test tool), against a real ``cllm serve`` whose ``--verifier``
is a real ``cllm verifier serve`` trusting the server's simulated root.

Every test leaves a screenshot of its last state in ``test-artifacts/ui/`` (gitignored).
Outside CI a missing chromium or an unbuilt UI skips these tests, saying why; in CI
(``CI=true``, where ``make test`` installs and builds both) it fails them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Playwright,
    Request,
    Route,
    expect,
    sync_playwright,
)

from cllm.crypto import HpkeKeyPair, SigningKey, decode_enc_header, open_request, request_aad
from cllm.server._startup import static_dir
from cllm.token import TokenSigner
from serving import ServeProcess, free_port, start_serve

_LAUNCH = "import sys; from cllm.cli import main; sys.exit(main())"
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
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
# A model answering on one core of a busy CI machine: generous, never a reason to fail.
TIMEOUT_MS = 90_000
expect.set_options(timeout=TIMEOUT_MS)


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


# --- processes ---------------------------------------------------------------------------------


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


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _require((static_dir() / "index.html").is_file(), "the web UI is not built (run `make ui`)")
    root = tmp_path_factory.mktemp("ui-stack")
    state = root / "state"
    subprocess.run(
        [sys.executable, "-c", _LAUNCH, "tee", "simulated-root", "--state-dir", str(state)],
        check=True,
        capture_output=True,
    )
    port = free_port()
    verifier_url = f"http://127.0.0.1:{port}"
    verifier_state = root / "verifier-state"
    verifier_log = root / "verifier.log"
    with verifier_log.open("wb") as log:
        verifier = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _LAUNCH,
                "verifier",
                "serve",
                "--port",
                str(port),
                "--state-dir",
                str(verifier_state),
                "--trust-simulated-root",
                str(state / "simulated" / "root-ca.pem"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(verifier_url, verifier, verifier_log)
        server = start_serve(
            ["--verifier", verifier_url], state_dir=state, log_path=root / "serve.log"
        )
    except BaseException:
        _stop(verifier)
        raise
    try:
        yield Stack(server, verifier_url, verifier_state)
    finally:
        server.stop()
        _stop(verifier)


# --- browser -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    _require(
        os.access(path, os.X_OK),
        "Debian's chromium is not installed (`make test` installs it with apt-get)",
    )
    return path


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright, chromium_path: str) -> Iterator[Browser]:
    # Playwright gives each launch a fresh, empty user-data-dir of its own.
    launched = playwright.chromium.launch(
        executable_path=chromium_path, args=CHROMIUM_FLAGS, headless=True
    )
    yield launched
    launched.close()


@dataclass
class Watch:
    """What the page did besides rendering: uncaught errors, console messages, dialogs."""

    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m]


@pytest.fixture
def watch() -> Watch:
    return Watch()


def _artifact_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("/")[-1]).strip("_")


@pytest.fixture
def snapshot(request: pytest.FixtureRequest) -> Callable[[Page, str], None]:
    """``snapshot(page, "step")``: a screenshot of an intermediate state, beside the final one."""

    def take(page: Page, step: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"{_artifact_name(request.node.nodeid)}-{step}.png")

    return take


@pytest.fixture
def page(browser: Browser, watch: Watch, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    tab.on("pageerror", lambda error: watch.errors.append(str(error)))
    tab.on("console", lambda message: watch.console.append(_console_text(message)))
    tab.on("request", lambda request: watch.requests.append(request))

    def on_dialog(dialog: Any) -> None:
        watch.dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    try:
        yield tab
        assert watch.errors == [], f"uncaught errors in the page: {watch.errors}"
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            tab.screenshot(path=ARTIFACTS / f"{_artifact_name(request.node.nodeid)}.png")
        finally:
            context.close()


def _console_text(message: ConsoleMessage) -> str:
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
