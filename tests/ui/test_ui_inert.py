"""Hostile text stays text: HTML in a model answer (sealed and signed correctly, as a
compromised server could send it) and in token claims (validly signed, as a compromised
verifier could issue them) is shown literally and never runs, by sanitising and text-only
rendering (the page's CSP would be a second wall; no CSP report may be needed here)."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from browsing import Impostor, Stack, Watch, ask, badge, open_ui, settled_badge

PAYLOAD = "<img src=x onerror=window.__xss=1;alert(1)>"
CODE = "print('<b>hi</b>')"


def _inert(page: Page, watch: Watch) -> None:
    assert page.evaluate("window.__xss") is None
    assert watch.dialogs == []
    assert page.locator("img").count() == 0
    assert watch.csp_violations() == []  # sanitising alone kept it out, CSP had nothing to do


def test_html_in_a_model_answer_is_shown_as_text(page: Page, stack: Stack, watch: Watch) -> None:
    impostor = Impostor(stack)
    impostor.install(page, answer=f"Here: {PAYLOAD}\n\n**bold** and\n\n```python\n{CODE}\n```")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_ui(page, stack.server.url)
    settled_badge(page, "amber")
    answer = ask(page, "Show me an image")
    expect(answer).to_have_attribute("data-signature", "verified")  # a correctly signed answer
    expect(answer).to_contain_text(PAYLOAD)
    expect(answer.locator("strong")).to_have_text("bold")  # markdown still renders
    expect(answer.locator("pre code")).to_have_text(CODE)
    answer.get_by_role("button", name="Copy code").click()
    expect(answer.get_by_role("button", name="Copy code")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == CODE
    assert b"Show me an image" in impostor.requests[0]  # the page sealed it to the forged key
    _inert(page, watch)


def test_html_in_token_claims_is_shown_as_text(page: Page, stack: Stack, watch: Watch) -> None:
    def hostile(claims: dict[str, Any]) -> None:
        claims["reasons"].append({"code": "x_note", "message": PAYLOAD})
        claims["components"].append({"type": "cllm.model", "name": PAYLOAD, "digest": "00" * 48})
        claims["tcb"]["status"] = PAYLOAD

    Impostor(stack).install(page, claims=hostile)
    open_ui(page, stack.server.url)
    settled_badge(page, "amber")
    badge(page).click()
    details = page.get_by_test_id("attestation-details")
    expect(details).to_be_visible()
    expect(details.get_by_text(PAYLOAD, exact=True)).to_have_count(2)  # TCB status, component
    expect(details).to_contain_text(f"x_note: {PAYLOAD}")
    expect(page.get_by_test_id("attestation-badge")).to_contain_text("Simulated")
    _inert(page, watch)
