""" "Continue unprotected" is consent for one moment, never a property of the chat (issue 14,
item 7): a chat reopened later asks again, and never sends in plain text at once, whether the
server now verifies (then the chat is sealed again) or not (then the user is asked again)."""

from __future__ import annotations

import os
from collections.abc import Callable

from playwright.sync_api import Page, Request, expect

from browsing import Stack, Watch, ask, open_ui, settled_badge
from serving import free_port


def _use_verifier(page: Page, url: str | None) -> None:
    """Set the verifier in Settings (``None``: the server's own) and check again."""
    page.get_by_role("button", name="Settings").click()
    if url is None:
        page.get_by_role("button", name="Use the server's verifier").click()
    else:
        page.get_by_test_id("verifier-url").fill(url)
    page.get_by_role("button", name="Save and check again").click()


def _chats(watch: Watch) -> list[Request]:
    return [r for r in watch.requests if r.url.endswith("/v1/chat/completions")]


def _continue_unprotected(page: Page, prompt: str) -> None:
    page.get_by_test_id("continue-unprotected").click()
    expect(page.get_by_test_id("unprotected-banner")).to_be_visible()
    answer = ask(page, prompt)
    expect(answer).to_have_attribute("data-unprotected", "true")


def test_a_reopened_unprotected_chat_asks_again(
    page: Page, stack: Stack, watch: Watch, snapshot: Callable[[Page, str], None]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # bound and released: nothing listens there
    open_ui(page, stack.server.url)
    settled_badge(page, "amber")
    _use_verifier(page, dead)
    settled_badge(page, "red")
    prompt = f"Plain words {os.urandom(4).hex()}"
    _continue_unprotected(page, prompt)
    plain = _chats(watch)
    assert len(plain) == 1
    assert "x-cllm-encryption" not in plain[0].headers
    assert prompt.encode() in (plain[0].post_data_buffer or b"")

    # Later, the server verifies again; the chat is reopened from the history.
    page.get_by_test_id("new-chat").click()
    _use_verifier(page, None)
    settled_badge(page, "amber")
    page.reload()
    settled_badge(page, "amber")
    history = page.locator(".history-item", has_text=prompt)
    expect(history).to_contain_text("(unprotected)")
    history.click()
    expect(page.get_by_test_id("message-user").first).to_have_text(prompt)
    settled_badge(page, "amber")
    expect(page.get_by_test_id("unprotected-banner")).to_be_hidden()
    # What went unprotected stays marked so.
    first = page.get_by_test_id("message-assistant").first
    expect(first).to_have_attribute("data-unprotected", "true")
    snapshot(page, "reopened-verified")

    secret = f"sealed words {os.urandom(4).hex()}"
    answer = ask(page, secret)
    expect(answer).to_have_attribute("data-signature", "verified")
    expect(answer).not_to_have_attribute("data-unprotected", "true")
    sealed = _chats(watch)[1:]
    assert len(sealed) == 1
    assert sealed[0].headers["x-cllm-encryption"] == "hpke-v1"
    assert sealed[0].headers["content-type"] == "application/cllm-hpke"
    body = sealed[0].post_data_buffer or b""
    assert secret.encode() not in body
    assert prompt.encode() not in body  # the earlier turn travels sealed too
    # Still listed as a chat that once went unprotected.
    expect(page.locator(".history-item", has_text=prompt)).to_contain_text("(unprotected)")

    # And reopened while the server does not verify: blocked, the choice offered again.
    page.get_by_test_id("new-chat").click()
    _use_verifier(page, dead)
    settled_badge(page, "red")
    page.locator(".history-item", has_text=prompt).click()
    expect(page.get_by_test_id("message-user").first).to_have_text(prompt)
    settled_badge(page, "red")
    expect(page.get_by_test_id("unprotected-banner")).to_be_hidden()
    expect(page.get_by_test_id("send")).to_be_disabled()
    expect(page.get_by_test_id("continue-unprotected")).to_be_visible()
    page.get_by_test_id("prompt").fill("this must not leave")
    page.get_by_test_id("prompt").press("Enter")
    page.wait_for_timeout(500)
    assert len(_chats(watch)) == 2  # nothing more was sent
    snapshot(page, "reopened-red")


def test_an_unprotected_chat_is_sealed_again_once_the_server_verifies(
    page: Page, stack: Stack, watch: Watch
) -> None:
    open_ui(page, stack.server.url)
    settled_badge(page, "amber")
    _use_verifier(page, f"http://127.0.0.1:{free_port()}")
    settled_badge(page, "red")
    _continue_unprotected(page, "Hi")

    _use_verifier(page, None)  # "check again" finds a server that verifies
    settled_badge(page, "amber")
    expect(page.get_by_test_id("unprotected-banner")).to_be_hidden()
    answer = ask(page, "And now?")
    expect(answer).to_have_attribute("data-signature", "verified")
    chats = _chats(watch)
    assert len(chats) == 2
    assert "x-cllm-encryption" not in chats[0].headers
    assert chats[1].headers["x-cllm-encryption"] == "hpke-v1"
