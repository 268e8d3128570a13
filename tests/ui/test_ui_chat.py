"""Chatting through the real UI: prompts sealed in the browser to the attested key, answers
opened and their signatures checked there, history kept only in the browser, stop, the
"continue unprotected" escape hatch, and a phone-sized, keyboard-driven session."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from browsing import Stack, Watch, ask, badge, open_ui, settled_badge
from proxying import RecordingProxy
from serving import free_port


def test_encrypted_round_trip_is_signed_and_stays_in_the_browser(
    page: Page, stack: Stack, watch: Watch, snapshot: Callable[[Page, str], None]
) -> None:
    open_ui(page, stack.server.url)
    settled_badge(page, "amber")
    expect(page.get_by_test_id("model-picker")).to_have_value("smollm2-135m-instruct")
    prompt = f"Say hello to Ada-{os.urandom(4).hex()}."
    answer = ask(page, prompt)
    expect(answer).to_have_attribute("data-status", "done")
    expect(answer).to_have_attribute("data-signature", "verified")
    expect(answer).to_contain_text("Signed by the attested server")
    assert answer.locator(".content").inner_text().strip()
    expect(page.get_by_test_id("message-user")).to_have_text(prompt)

    chats = [r for r in watch.requests if r.url.endswith("/v1/chat/completions")]
    assert len(chats) == 1
    headers = chats[0].headers
    assert headers["x-cllm-encryption"] == "hpke-v1"
    assert headers["content-type"] == "application/cllm-hpke"
    assert prompt.encode() not in (chats[0].post_data_buffer or b"")

    # A second turn carries the first (the only history the server ever sees).
    second = ask(page, "And goodbye.")
    expect(second).to_have_attribute("data-signature", "verified")
    snapshot(page, "conversation")

    # History lives in localStorage; a reload shows it, reopening it checks the server again.
    stored = json.loads(page.evaluate("localStorage.getItem('cllm.chats.v1')"))
    assert stored[0]["messages"][0]["content"] == prompt
    page.reload()
    settled_badge(page, "amber")
    page.get_by_role("button", name=prompt, exact=True).click()
    expect(page.get_by_test_id("message-user").first).to_have_text(prompt)
    expect(page.get_by_test_id("message-assistant")).to_have_count(2)
    settled_badge(page, "amber")
    assert prompt not in stack.server.log()  # the server never logs a prompt


def test_a_forwarding_proxy_sees_no_plaintext(page: Page, stack: Stack) -> None:
    with RecordingProxy(target_port=stack.server.port) as proxy:
        open_ui(page, proxy.url)
        settled_badge(page, "amber")
        loaded = len(proxy.captured())  # the page, its script and the attestation report
        secret = f"my secret is papaya-{os.urandom(8).hex()}"
        answer = ask(page, f"Repeat after me: {secret}")
        expect(answer).to_have_attribute("data-signature", "verified")
        seen = proxy.captured()
    chat = seen[loaded:]
    assert b"POST /v1/chat/completions" in chat
    assert b"x-cllm-encryption: hpke-v1" in chat.lower()
    assert b"application/cllm-hpke-chunks" in chat.lower()
    assert secret.encode() not in seen
    assert b"papaya" not in seen
    assert b"Repeat after me" not in seen
    # The answer is sealed too: no SSE event, no signature member in the clear.
    assert b"chat.completion" not in chat
    assert b"cllm_signature" not in chat


def test_continue_unprotected_is_for_that_chat_only_and_marked(
    page: Page, stack: Stack, watch: Watch, snapshot: Callable[[Page, str], None]
) -> None:
    page.add_init_script(f"localStorage.setItem('cllm.verifier', 'http://127.0.0.1:{free_port()}')")
    open_ui(page, stack.server.url)
    settled_badge(page, "red")
    expect(page.get_by_test_id("send")).to_be_disabled()
    snapshot(page, "blocked")
    banner = page.get_by_test_id("unprotected-banner")
    expect(banner).to_be_hidden()

    page.get_by_test_id("continue-unprotected").click()
    expect(banner).to_be_visible()
    expect(page.get_by_test_id("send")).to_be_enabled()
    expect(badge(page)).to_have_attribute("data-state", "red")  # still says what it is
    answer = ask(page, "Hi")
    expect(answer).to_have_attribute("data-unprotected", "true")
    expect(answer).to_contain_text("Unprotected")
    chats = [r for r in watch.requests if r.url.endswith("/v1/chat/completions")]
    assert "x-cllm-encryption" not in chats[0].headers
    assert b'"content":"Hi"' in (chats[0].post_data_buffer or b"")
    snapshot(page, "unprotected-chat")

    page.get_by_test_id("new-chat").click()  # the next chat is blocked again
    settled_badge(page, "red")
    expect(banner).to_be_hidden()
    expect(page.get_by_test_id("send")).to_be_disabled()
    expect(page.get_by_test_id("continue-unprotected")).to_be_visible()


def test_stop_ends_the_answer(page: Page, stack: Stack) -> None:
    open_ui(page, stack.server.url, max_tokens=400)
    settled_badge(page, "amber")
    stop = page.get_by_test_id("stop")
    expect(stop).to_be_disabled()
    page.get_by_test_id("prompt").fill("Write a long story about a dragon and a lighthouse.")
    page.get_by_test_id("send").click()
    answer = page.get_by_test_id("message-assistant")
    expect(answer.locator(".content")).not_to_be_empty()
    expect(stop).to_be_enabled()
    stop.click()
    expect(answer).to_have_attribute("data-status", "stopped")
    expect(answer).to_contain_text("Stopped")
    expect(page.get_by_test_id("send")).to_be_enabled()
    expect(stop).to_be_disabled()


def test_phone_sized_keyboard_session_and_themes(page: Page, stack: Stack) -> None:
    page.set_viewport_size({"width": 375, "height": 720})
    open_ui(page, stack.server.url)
    settled_badge(page, "amber")
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    for hook in ("prompt", "send", "stop", "attestation-badge"):
        box = page.get_by_test_id(hook).bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 375

    # Keyboard only: Enter sends from the message box.
    page.get_by_test_id("prompt").focus()
    page.keyboard.type("Name a colour.")
    page.keyboard.press("Enter")
    answer = page.get_by_test_id("message-assistant")
    expect(answer).to_have_attribute("data-status", "done")
    expect(answer).to_have_attribute("data-signature", "verified")
    # The badge opens with the keyboard too.
    badge(page).focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("attestation-details")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("attestation-details")).to_be_hidden()

    # On a phone the chat list is a drawer.
    new_chat = page.get_by_test_id("new-chat")
    expect(new_chat).not_to_be_in_viewport()
    page.get_by_label("Show chats").click()
    expect(new_chat).to_be_in_viewport()
    new_chat.click()
    expect(page.get_by_test_id("message-assistant")).to_have_count(0)
    settled_badge(page, "amber")

    # Light and dark themes, remembered.
    html = page.locator("html")
    first = html.get_attribute("data-theme")
    assert first in ("light", "dark")
    page.get_by_role("button", name=re.compile("Switch to (dark|light) theme")).click()
    other = "dark" if first == "light" else "light"
    expect(html).to_have_attribute("data-theme", other)
    page.reload()
    expect(html).to_have_attribute("data-theme", other)
    settled_badge(page, "amber")
