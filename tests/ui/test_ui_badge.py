"""The attestation badge: checked for every new chat against the real verifier, amber for
trusted simulated evidence, red (and sending blocked, with the reason shown) whenever the
check cannot vouch for the keys the page would use."""

from __future__ import annotations

import base64
import json
import os
import re
from urllib.parse import parse_qs, urlparse

import jwt
from playwright.sync_api import Page, Route, expect

from browsing import Stack, Watch, badge, open_ui, settled_badge
from serving import free_port, http


def _send_blocked(page: Page, reason: re.Pattern[str] | str) -> None:
    expect(page.get_by_test_id("send")).to_be_disabled()
    expect(page.get_by_test_id("send-blocked-reason")).to_be_visible()
    expect(page.get_by_test_id("send-blocked-reason")).to_contain_text(reason)
    expect(page.get_by_test_id("continue-unprotected")).to_be_visible()


def test_simulated_evidence_is_amber_with_every_detail(page: Page, stack: Stack) -> None:
    open_ui(page, stack.server.url)
    found = settled_badge(page, "amber")
    expect(found).to_contain_text("Simulated")
    expect(page.get_by_test_id("send")).to_be_enabled()
    expect(page.get_by_test_id("continue-unprotected")).to_be_hidden()

    details = page.get_by_test_id("attestation-details")
    expect(details).to_be_hidden()
    found.hover()  # hover opens the details ...
    expect(details).to_be_visible()
    page.mouse.move(1, 850)
    expect(details).to_be_hidden()
    found.click()  # ... and so does a click, which keeps them open
    expect(details).to_be_visible()
    expect(found).to_have_attribute("aria-expanded", "true")

    evidence = http.get(
        f"{stack.server.url}/v1/attestation/report", params={"nonce": os.urandom(32).hex()}
    ).json()
    text = details.inner_text()
    for expected in ("simulated-tdx", "UpToDate", "Collateral expires", "MRTD", "RTMR3"):
        assert expected in text
    assert stack.verifier_url in text
    assert "Checked at" in text
    # each measured component with its digest: model, engine, UI, configuration
    for event in evidence["event_log"]:
        assert event["digest"]["sha384"] in text
    for label in ("Model", "Engine", "UI", "Configuration"):
        expect(details.locator(".component-kind", has_text=label).first).to_be_visible()

    page.keyboard.press("Escape")
    expect(details).to_be_hidden()


def test_every_new_chat_checks_again_with_a_fresh_nonce(
    page: Page, stack: Stack, watch: Watch
) -> None:
    open_ui(page, stack.server.url)
    settled_badge(page, "amber")
    page.get_by_test_id("new-chat").click()
    settled_badge(page, "amber")
    nonces = [
        parse_qs(urlparse(r.url).query)["nonce"][0]
        for r in watch.requests
        if "/v1/attestation/report" in r.url
    ]
    assert len(nonces) == 2
    assert len(set(nonces)) == 2
    assert all(re.fullmatch("[0-9a-f]{64}", n) for n in nonces)
    posts = [r for r in watch.requests if r.url == f"{stack.verifier_url}/v1/attestation"]
    assert [json.loads(r.post_data or "")["nonce"] for r in posts] == nonces
    assert all(json.loads(r.post_data or "")["policy"] == "default" for r in posts)
    jwks = [r for r in watch.requests if r.url == f"{stack.verifier_url}/.well-known/jwks.json"]
    assert jwks


def test_a_dead_verifier_is_red_and_the_choice_is_remembered(page: Page, stack: Stack) -> None:
    open_ui(page, stack.server.url)
    settled_badge(page, "amber")
    page.get_by_role("button", name="Settings").click()
    field = page.get_by_test_id("verifier-url")
    expect(field).to_have_value(stack.verifier_url)  # from the server's --verifier (/healthz)
    dead = f"http://127.0.0.1:{free_port()}"  # bound and released: nothing listens there
    field.fill(dead)
    page.get_by_role("button", name="Save and check again").click()
    settled_badge(page, "red")
    _send_blocked(page, "unreachable")
    badge(page).click()
    expect(page.get_by_test_id("attestation-details")).to_contain_text(dead)

    page.reload()  # remembered in localStorage
    settled_badge(page, "red")
    _send_blocked(page, "unreachable")

    page.get_by_role("button", name="Settings").click()
    page.get_by_role("button", name="Use the server's verifier").click()
    page.get_by_role("button", name="Save and check again").click()
    settled_badge(page, "amber")
    expect(page.get_by_test_id("send")).to_be_enabled()


def test_tampered_evidence_is_red(page: Page, stack: Stack) -> None:
    """A box on the path swaps the HPKE key in the evidence for its own: the binding no longer
    matches the quote, the verifier says so, and nothing can be sent."""

    def swap_key(route: Route) -> None:
        response = route.fetch()
        doc = response.json()
        doc["binding"]["hpke_key"] = base64.b64encode(os.urandom(32)).decode()
        route.fulfill(response=response, json=doc)

    page.route(re.compile(r"/v1/attestation/report\?"), swap_key)
    open_ui(page, stack.server.url)
    settled_badge(page, "red")
    _send_blocked(page, "binding_mismatch")
    badge(page).click()
    expect(page.get_by_test_id("attestation-details")).to_contain_text("binding_mismatch")


def test_a_forged_token_is_red(page: Page, stack: Stack) -> None:
    """A verifier answer edited in transit (contraindicated made affirming) fails its ES256
    signature check in the browser."""

    def forge(route: Route) -> None:
        response = route.fetch()
        token = response.json()["token"]
        header, _, signature = token.split(".")
        claims = jwt.decode(token, options={"verify_signature": False})
        claims.update(status="affirming", simulated=False, tee="tdx")
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        route.fulfill(response=response, json={"token": f"{header}.{payload}.{signature}"})

    page.route(f"{stack.verifier_url}/v1/attestation", forge)
    open_ui(page, stack.server.url)
    settled_badge(page, "red")
    _send_blocked(page, "token_bad_signature")
    expect(page.get_by_test_id("attestation-details")).not_to_contain_text("affirming")


def test_sending_waits_for_the_check(page: Page, stack: Stack) -> None:
    """Pending blocks sending too: nothing goes out before the verifier has answered."""
    held: list[Route] = []
    page.route(f"{stack.verifier_url}/v1/attestation", lambda route: held.append(route))
    open_ui(page, stack.server.url)
    expect(page.get_by_test_id("send-blocked-reason")).to_contain_text("paused")
    for _ in range(600):  # until the page's evidence is at the (held) verifier
        if held:
            break
        page.wait_for_timeout(100)
    assert len(held) == 1
    expect(badge(page)).to_have_attribute("data-state", "pending")
    expect(page.get_by_test_id("send")).to_be_disabled()
    page.get_by_test_id("prompt").fill("too early")
    page.get_by_test_id("prompt").press("Enter")
    expect(page.get_by_test_id("message-user")).to_have_count(0)
    held[0].continue_()
    settled_badge(page, "amber")
    expect(page.get_by_test_id("send")).to_be_enabled()
    expect(page.get_by_test_id("send-blocked-reason")).to_be_hidden()
