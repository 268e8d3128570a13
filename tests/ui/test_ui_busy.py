"""A busy server (429 with Retry-After for every attestation request, as a client over its
share, or any client during a flood, would see) is no verdict: the page waits and asks again,
shows a red "Busy" badge with sending blocked, never offers "Continue unprotected" for it, and
checks again by itself, turning amber once the server answers."""

from __future__ import annotations

import re

from playwright.sync_api import Page, Route, expect

from browsing import Stack, Watch, badge, open_ui, settled_badge


def _busy(route: Route) -> None:
    route.fulfill(
        status=429,
        headers={"Retry-After": "0", "Content-Type": "application/json"},
        body='{"error": {"code": "rate_limited", "message": "over this client\'s share"}}',
    )


def test_a_busy_server_is_waited_out_never_sent_to_unprotected(
    page: Page, stack: Stack, watch: Watch
) -> None:
    report = re.compile(r"/v1/attestation/report\?")
    page.route(report, _busy)
    open_ui(page, stack.server.url)
    found = settled_badge(page, "red")
    expect(found).to_contain_text("Busy")
    expect(page.get_by_test_id("send")).to_be_disabled()
    expect(page.get_by_test_id("send-blocked-reason")).to_contain_text("busy")
    expect(page.get_by_test_id("continue-unprotected")).to_be_hidden()
    asked = [r for r in watch.requests if "/v1/attestation/report" in r.url]
    assert len(asked) == 6  # the first request and 5 retries, with backoff
    assert len({r.url for r in asked}) == 1  # all for the same nonce

    page.unroute(report)  # the server has room again: the page checks again by itself
    settled_badge(page, "amber")
    expect(page.get_by_test_id("send")).to_be_enabled()
    expect(badge(page)).to_contain_text("Simulated")
