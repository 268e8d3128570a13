"""Who the page believes. Served by the user's own ``cllm proxy``, it shows the proxy's verdict
(reached with the user's configuration) and chats through it. Served by the server it
verifies, a verifier the server suggested is never green, whatever it signs; a verifier the
user chose is remembered with its key, and a change of key blocks sending until confirmed. A
verdict is checked again when its token expires, and sending waits for that check."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Page, Route, expect

from browsing import Stack, Watch, ask, badge, open_ui, settled_badge
from cllm.token import TokenSigner
from gateway import ProxyProcess, signing_verifier, start_proxy
from serving import ServeProcess, start_serve


@pytest.fixture(scope="module")
def local_proxy(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    root = tmp_path_factory.mktemp("ui-proxy")
    trusted = stack.server.log_path.parent / "state" / "simulated" / "root-ca.pem"
    proxy = start_proxy(
        stack.server.url,
        ["--trust-simulated-root", str(trusted)],
        config_home=root,
        log_path=root / "proxy.log",
    )
    yield proxy
    proxy.stop()


def test_the_ui_served_by_cllm_proxy_shows_its_verdict_and_chats(
    page: Page, local_proxy: ProxyProcess, stack: Stack, watch: Watch
) -> None:
    open_ui(page, local_proxy.url)
    found = settled_badge(page, "amber")
    expect(found).to_contain_text("Simulated")
    found.click()
    details = page.get_by_test_id("attestation-details")
    expect(details).to_contain_text("your cllm proxy")
    expect(details).to_contain_text("simulated-tdx")
    expect(page.get_by_test_id("trust-notice")).to_be_hidden()
    page.keyboard.press("Escape")
    answer = ask(page, "Name a colour. PROXIED-4410")
    expect(answer).to_have_attribute("data-status", "done")
    expect(answer).to_have_attribute("data-signature", "verified")  # checked here too
    origins = {urlparse(r.url).netloc for r in watch.requests if r.url.startswith("http")}
    assert origins == {urlparse(local_proxy.url).netloc}  # neither the server nor a verifier
    assert not any("/v1/attestation" in r.url for r in watch.requests)


@pytest.fixture(scope="module")
def self_vouching(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServeProcess, list[TokenSigner], str]]:
    """A server that names, in /healthz, a "verifier" of its own that signs affirming for
    any evidence (what a server with no TEE would do)."""
    root = tmp_path_factory.mktemp("self-vouching")
    signers = [TokenSigner.load_or_create(root / "verifier")]
    fake = signing_verifier(signers, lambda claims: None)
    with fake:
        server = start_serve(
            ["--verifier", fake.url],
            state_dir=stack.server.log_path.parent / "state",
            log_path=root / "serve.log",
        )
        try:
            yield server, signers, fake.url
        finally:
            server.stop()


def _claim_tdx(page: Page) -> None:
    """The server's evidence says "tdx" (it chooses what it sends)."""

    def lie(route: Route) -> None:
        response = route.fetch()
        doc = response.json()
        doc["tee"] = "tdx"
        route.fulfill(response=response, json=doc)

    page.route(re.compile(r"/v1/attestation/report\?"), lie)


def test_a_server_suggested_verifier_is_never_green(
    page: Page, self_vouching: tuple[ServeProcess, list[TokenSigner], str]
) -> None:
    server, _, fake_url = self_vouching
    _claim_tdx(page)
    open_ui(page, server.url)
    found = settled_badge(page, "amber")  # its verifier says "affirming": not enough
    expect(found).to_contain_text("Server-chosen verifier")
    notice = page.get_by_test_id("trust-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("The server chose its own verifier")
    expect(notice).to_contain_text("cllm proxy")
    page.get_by_test_id("new-chat").click()
    settled_badge(page, "amber")
    expect(badge(page)).not_to_have_attribute("data-state", "green")
    assert fake_url


def test_a_chosen_verifier_is_pinned_and_a_new_key_reconfirmed(
    page: Page, self_vouching: tuple[ServeProcess, list[TokenSigner], str], tmp_path: Path
) -> None:
    """The same verifier, chosen by the user in Settings, is the user's decision: green, its
    key remembered (thumbprint shown). When it starts signing with another key, sending is
    blocked until the user confirms that key."""
    server, signers, fake_url = self_vouching
    _claim_tdx(page)
    open_ui(page, server.url)
    settled_badge(page, "amber")
    page.get_by_role("button", name="Settings").click()
    # A verifier of the user's choosing (here the same service under another name: what
    # matters is that the user, not the server, named it).
    page.get_by_test_id("verifier-url").fill(fake_url.replace("127.0.0.1", "localhost"))
    page.get_by_role("button", name="Save and check again").click()
    settled_badge(page, "green")
    expect(page.get_by_test_id("trust-notice")).to_be_hidden()
    badge(page).click()
    details = page.get_by_test_id("attestation-details")
    expect(details).to_contain_text(signers[-1].kid)  # the thumbprint, shown
    page.keyboard.press("Escape")

    signers.append(TokenSigner.load_or_create(tmp_path / "rotated"))
    try:
        page.get_by_test_id("new-chat").click()
        settled_badge(page, "red")
        expect(page.get_by_test_id("send")).to_be_disabled()
        expect(page.get_by_test_id("send-blocked-reason")).to_contain_text("key has changed")
        badge(page).click()
        page.get_by_test_id("confirm-verifier-key").click()
        settled_badge(page, "green")
        expect(page.get_by_test_id("send")).to_be_enabled()
    finally:
        signers.pop()


def test_the_verdict_is_checked_again_when_its_token_expires(
    page: Page, stack: Stack, watch: Watch
) -> None:
    page.clock.install()
    open_ui(page, stack.server.url)
    settled_badge(page, "amber")
    held: list[Route] = []
    page.route(f"{stack.verifier_url}/v1/attestation", lambda route: held.append(route))
    page.clock.fast_forward("05:01")  # past the token's 5-minute exp
    for _ in range(600):
        if held:
            break
        page.wait_for_timeout(100)
    assert len(held) == 1
    expect(badge(page)).to_have_attribute("data-state", "pending")
    expect(page.get_by_test_id("send")).to_be_disabled()
    expect(page.get_by_test_id("send-blocked-reason")).to_contain_text("paused")
    held[0].continue_()
    settled_badge(page, "amber")
    expect(page.get_by_test_id("send")).to_be_enabled()
    reports = [r for r in watch.requests if "/v1/attestation/report" in r.url]
    assert len(reports) == 2


def test_the_ui_served_by_cllm_proxy_blocks_an_unverified_server(
    page: Page, stack: Stack, tmp_path: Path
) -> None:
    """The user's configuration does not trust the simulated root: red, sending blocked, and
    no offer to go unprotected (the proxy never forwards to an unverified server)."""
    proxy = start_proxy(stack.server.url, [], config_home=tmp_path, log_path=tmp_path / "p.log")
    try:
        open_ui(page, proxy.url)
        settled_badge(page, "red")
        expect(page.get_by_test_id("send")).to_be_disabled()
        expect(page.get_by_test_id("send-blocked-reason")).to_contain_text("simulated_not_trusted")
        expect(page.get_by_test_id("continue-unprotected")).to_be_hidden()
    finally:
        proxy.stop()
