"""The verdict's GPUs in the web UI: the details panel lists each GPU (every field, as text),
and the badge is green only when the verdict is affirming and every GPU is verified hardware; a
simulated GPU turns it amber, like a simulated TD. The verdicts come from a verifier the user
chose in Settings that signs contract-shaped ``gpus`` claims (what a verifier appraising GPU
evidence says), for the real server's evidence (whose ``tee`` is rewritten to ``tdx``: the TD
is simulated here, and the GPU rule is what is under test)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

from browsing import Stack, badge, open_ui, settled_badge
from cllm.token import TokenSigner
from gateway import signing_verifier
from gpu_claims import DRIVER_RIM, HWMODEL, UEID, gpu_claim, simulated_gpu, unattested_gpu

HOSTILE = "<img src=x onerror=\"document.title='owned'\">"


@pytest.fixture
def gpus(tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A verifier (URL) whose affirming tokens carry ``current["gpus"]``."""
    current: dict[str, Any] = {"gpus": []}

    def edit(claims: dict[str, Any]) -> None:
        claims["gpus"] = current["gpus"]

    with signing_verifier(TokenSigner.load_or_create(tmp_path / "v"), edit) as fake:
        yield fake.url, current


def _claim_tdx(route: Route) -> None:
    response = route.fetch()
    doc = response.json()
    doc["tee"] = "tdx"
    route.fulfill(response=response, json=doc)


def _choose_verifier(page: Page, url: str) -> None:
    page.get_by_role("button", name="Settings").click()
    page.get_by_test_id("verifier-url").fill(url)
    page.get_by_role("button", name="Save and check again").click()


def test_gpus_are_listed_and_a_simulated_gpu_is_amber(
    page: Page,
    stack: Stack,
    gpus: tuple[str, dict[str, Any]],
    snapshot: Callable[[Page, str], None],
) -> None:
    url, current = gpus
    current["gpus"] = [gpu_claim(0), gpu_claim(1, hwmodel=HOSTILE)]
    open_ui(page, stack.server.url)
    settled_badge(page, "amber")  # the server's own verifier: the simulated TD
    page.route(re.compile(r"/v1/attestation/report\?"), _claim_tdx)
    _choose_verifier(page, url)
    found = settled_badge(page, "green")  # affirming, and both GPUs verified hardware
    expect(found).to_contain_text("Verified TDX")
    found.click()
    details = page.get_by_test_id("attestation-details")
    listed = details.get_by_test_id("gpu")
    expect(listed).to_have_count(2)
    expect(details).to_contain_text("GPUs (2)")
    for expected in (
        "GPU 0",
        "GPU 1",
        "hopper",
        HWMODEL,
        UEID,
        "550.90.07",
        "96.00.CF.00.01",
        "Matched the RIMs",
        DRIVER_RIM,
        "good",
    ):
        expect(details).to_contain_text(expected)
    expect(details).to_contain_text(HOSTILE)  # server-chosen text, shown as text ...
    expect(details.locator("img")).to_have_count(0)  # ... never as HTML
    assert [listed.nth(i).get_attribute("data-state") for i in range(2)] == ["ok", "ok"]
    page.keyboard.press("Escape")

    current["gpus"] = [gpu_claim(0), simulated_gpu(1)]
    page.get_by_test_id("new-chat").click()  # every new chat checks again
    found = settled_badge(page, "amber")
    expect(found).to_contain_text("Simulated GPU")
    expect(page.get_by_test_id("send")).to_be_enabled()  # amber: usable, and said
    found.click()
    details = page.get_by_test_id("attestation-details")
    expect(details).to_contain_text("GPU 1: simulated, not NVIDIA hardware evidence")
    expect(details).to_contain_text("simulated GPU: not hardware evidence")
    listed = details.get_by_test_id("gpu")
    expect(listed).to_have_count(2)
    assert [listed.nth(i).get_attribute("data-state") for i in range(2)] == ["ok", "warn"]
    expect(details).to_contain_text("2: GPU 1: simulated")  # the summary line
    details.get_by_test_id("gpu-list").scroll_into_view_if_needed()
    snapshot(page, "simulated-gpu")
    page.keyboard.press("Escape")

    current["gpus"] = [unattested_gpu(0)]
    page.get_by_test_id("new-chat").click()
    expect(settled_badge(page, "amber")).to_contain_text("GPU not attested")

    current["gpus"] = []
    page.get_by_test_id("new-chat").click()
    settled_badge(page, "green")  # no GPU evidence: the verdict alone decides
    badge(page).click()
    expect(page.get_by_test_id("gpu-none")).to_have_text("No GPU evidence.")
    assert page.title() != "owned"
