"""Collateral fetching against a PCS/PCCS stand-in (httpx MockTransport) that serves Intel's
real signed documents from the corpus; QCNL configuration parsing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from cllm.errors import CollateralFetchError, CollateralFormatError
from cllm.quote import parse_quote
from cllm.verify import (
    INTEL_PCS_URL,
    Collateral,
    CollateralFetcher,
    QuoteVerifier,
    default_collateral_url,
    intel_root,
    load_collateral,
)
from cllm.verify._pcs import read_qcnl_pccs_url
from pcs_fake import FakePcs
from vectors import case, read, require_vectors

CASE = "gotdxguest-cos113@20250604"


def _setup(pccs: bool) -> tuple[dict[str, Any], Collateral, FakePcs, list[float]]:
    entry = case(CASE)
    collateral = load_collateral(require_vectors() / entry["collateral"])
    return entry, collateral, FakePcs(collateral, pccs=pccs), [float(entry["at"])]


def _fetcher(fake: FakePcs, clock: list[float], url: str) -> CollateralFetcher:
    client = httpx.Client(transport=httpx.MockTransport(fake.handler))
    return CollateralFetcher(base_url=url, client=client, clock=lambda: clock[0])


@pytest.mark.parametrize(
    ("url", "pccs"),
    [
        ("https://pccs.example:8081/sgx/certification/v4/", True),
        (INTEL_PCS_URL, False),
    ],
)
def test_fetched_collateral_is_byte_identical_and_verifies(url: str, pccs: bool) -> None:
    entry, collateral, fake, clock = _setup(pccs)
    quote = parse_quote(read(entry["quote"]))
    fetched = _fetcher(fake, clock, url).for_quote(quote)
    assert fetched == collateral
    assert any(f"/tdx/certification/v4/tcb?fmspc={entry['fmspc']}" in u for u in fake.requests)
    assert any("ca=platform" in u for u in fake.requests)
    result = QuoteVerifier(trust_root=intel_root()).verify(quote, fetched, at=entry["at"])
    assert result.ok
    assert result.tcb_status == "UpToDate"


def test_cached_until_next_update_then_refetched() -> None:
    entry, _, fake, clock = _setup(pccs=True)
    fetcher = _fetcher(fake, clock, "https://pccs.example:8081")
    quote = parse_quote(read(entry["quote"]))
    fetcher.for_quote(quote)
    fetched_once = len(fake.requests)
    clock[0] = entry["window"]["not_after"]  # the last second every piece is current
    fetcher.for_quote(quote)
    assert len(fake.requests) == fetched_once
    clock[0] = entry["window"]["not_after"] + 1
    fetcher.for_quote(quote)
    assert len(fake.requests) == 2 * fetched_once


def test_http_error_is_typed() -> None:
    def not_found(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404)

    fetcher = CollateralFetcher(
        base_url="https://pccs.example:8081",
        client=httpx.Client(transport=httpx.MockTransport(not_found)),
        clock=lambda: 0.0,
    )
    with pytest.raises(CollateralFetchError) as raised:
        fetcher.fetch(tee="tdx", fmspc=bytes(6), ca="platform")
    assert raised.value.code == "collateral_not_found"


def test_connection_failure_is_typed() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    fetcher = CollateralFetcher(
        base_url="https://pccs.example:8081",
        client=httpx.Client(transport=httpx.MockTransport(refuse)),
        clock=lambda: 0.0,
    )
    with pytest.raises(CollateralFetchError) as raised:
        fetcher.fetch(tee="sgx", fmspc=bytes(6), ca="processor")
    assert raised.value.code == "collateral_fetch"


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"tcbInfo":{}}', b'{"tcbInfo":{},"signature":"zz"}', b"[1]"],
)
def test_malformed_tcb_info_response_is_typed(body: bytes) -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"TCB-Info-Issuer-Chain": "x"})

    fetcher = CollateralFetcher(
        base_url="https://pccs.example:8081",
        client=httpx.Client(transport=httpx.MockTransport(serve)),
        clock=lambda: 0.0,
    )
    with pytest.raises(CollateralFormatError):
        fetcher.fetch(tee="tdx", fmspc=bytes(6), ca="platform")


def test_qcnl_json_config(tmp_path: Path) -> None:
    conf = tmp_path / "sgx_default_qcnl.conf"
    conf.write_text(
        "{\n  // PCCS server address\n"
        '  "pccs_url": "https://localhost:8081/sgx/certification/v4/",\n'
        '  "use_secure_cert": false\n}\n'
    )
    assert read_qcnl_pccs_url(conf) == "https://localhost:8081/sgx/certification/v4/"
    assert default_collateral_url(conf) == "https://localhost:8081/sgx/certification/v4/"


def test_qcnl_legacy_config(tmp_path: Path) -> None:
    conf = tmp_path / "sgx_default_qcnl.conf"
    conf.write_text(
        "# PCCS server address\nPCCS_URL=https://pccs.internal:8081/sgx/certification/v3/\n"
        "USE_SECURE_CERT=FALSE\n"
    )
    assert read_qcnl_pccs_url(conf) == "https://pccs.internal:8081/sgx/certification/v3/"


def test_without_qcnl_config_intel_pcs_is_the_default(tmp_path: Path) -> None:
    assert read_qcnl_pccs_url(tmp_path / "missing.conf") is None
    assert default_collateral_url(tmp_path / "missing.conf") == INTEL_PCS_URL
    (tmp_path / "empty.conf").write_text(json.dumps({"use_secure_cert": True}))
    assert default_collateral_url(tmp_path / "empty.conf") == INTEL_PCS_URL
