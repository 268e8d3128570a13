"""Browser tests of the web UI: Debian's chromium, driven by Playwright and launched by path
(never a browser downloaded by a test tool), against a real ``cllm serve`` whose ``--verifier``
is a real ``cllm verifier serve`` trusting the server's simulated root.

Every test leaves a screenshot of its last state in ``test-artifacts/ui/`` (gitignored).
Outside CI a missing chromium or an unbuilt UI skips these tests, saying why; in CI
(``CI=true``, where ``make test`` installs and builds both) it fails them. Helpers live in
tests/browsing.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from browsing import (
    ARTIFACTS,
    CHROMIUM_FLAGS,
    TIMEOUT_MS,
    Stack,
    Watch,
    artifact_name,
    console_text,
)
from cllm.server._startup import static_dir
from serving import start_serve, start_verifier

_LAUNCH = "import sys; from cllm.cli import main; sys.exit(main())"


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


# --- processes ---------------------------------------------------------------------------------


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
    verifier_state = root / "verifier-state"
    verifier = start_verifier(
        trust=state / "simulated" / "root-ca.pem",
        state_dir=verifier_state,
        log=root / "verifier.log",
    )
    try:
        server = start_serve(
            ["--verifier", verifier.url], state_dir=state, log_path=root / "serve.log"
        )
    except BaseException:
        verifier.stop()
        raise
    try:
        yield Stack(server, verifier.url, verifier_state)
    finally:
        server.stop()
        verifier.stop()


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


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def snapshot(request: pytest.FixtureRequest) -> Callable[[Page, str], None]:
    """``snapshot(page, "step")``: a screenshot of an intermediate state, beside the final one."""

    def take(page: Page, step: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"{artifact_name(request.node.nodeid)}-{step}.png")

    return take


@pytest.fixture
def page(browser: Browser, watch: Watch, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    tab.on("pageerror", lambda error: watch.errors.append(str(error)))
    tab.on("console", lambda message: watch.console.append(console_text(message)))
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
            tab.screenshot(path=ARTIFACTS / f"{artifact_name(request.node.nodeid)}.png")
        finally:
            context.close()
