"""Collateral for the service: offline directory first, else the PCCS with its cache; when the
PCCS is unreachable the cached set serves until it expires, then verification fails closed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from cllm.errors import CollateralError
from cllm.quote import parse_quote
from cllm.verifier import CollateralSource
from cllm.verify import CollateralFetcher, load_collateral
from pcs_fake import FakePcs
from vectors import case, read, require_vectors

CASE = "gotdxguest-cos113@20250604"


def _entry() -> dict[str, Any]:
    require_vectors()
    return case(CASE)


def test_offline_directory_is_preferred(tmp_path: Path) -> None:
    entry = _entry()
    collateral = load_collateral(require_vectors() / entry["collateral"])
    (tmp_path / "set.json").write_text(json.dumps(collateral.to_json_dict()))
    (tmp_path / "junk.json").write_text("{")
    source = CollateralSource(offline_dir=tmp_path, fetcher=None)
    assert source.for_quote(parse_quote(read(entry["quote"]))) == collateral


def test_no_source_is_collateral_unavailable(tmp_path: Path) -> None:
    entry = _entry()
    source = CollateralSource(offline_dir=tmp_path, fetcher=None)
    with pytest.raises(CollateralError) as raised:
        source.for_quote(parse_quote(read(entry["quote"])))
    assert raised.value.code == "collateral_unavailable"


def test_unreachable_pccs_serves_cache_until_expiry() -> None:
    entry = _entry()
    collateral = load_collateral(require_vectors() / entry["collateral"])
    fake = FakePcs(collateral, pccs=True)
    reachable = [True]

    def handler(request: httpx.Request) -> httpx.Response:
        if not reachable[0]:
            raise httpx.ConnectError("down", request=request)
        return fake.handler(request)

    clock = [float(entry["at"])]
    fetcher = CollateralFetcher(
        base_url="https://pccs.example:8081",
        client=httpx.Client(transport=httpx.MockTransport(handler)),
        clock=lambda: clock[0],
    )
    source = CollateralSource(offline_dir=None, fetcher=fetcher)
    quote = parse_quote(read(entry["quote"]))
    assert source.for_quote(quote) == collateral
    reachable[0] = False
    clock[0] = entry["window"]["not_after"]  # still current: served from the cache
    assert source.for_quote(quote) == collateral
    clock[0] = entry["window"]["not_after"] + 1  # expired and the PCCS is down: fail closed
    with pytest.raises(CollateralError) as raised:
        source.for_quote(quote)
    assert raised.value.code == "collateral_unavailable"
