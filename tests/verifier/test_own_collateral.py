"""The verifier's own collateral, which carried collateral is held against: fetched for hardware
evidence only, a failed fetch not retried for a while, offline files matched by PCK CA."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

import hostile_chains as hc
from cllm.quote import parse_quote
from cllm.tee import SimulatedDcap
from cllm.verifier import CollateralSource
from cllm.verify import CollateralFetcher, load_collateral
from pcs_fake import FakePcs
from vectors import case, read, require_vectors

CASE = "gotdxguest-cos113@20250604"


def test_own_collateral_is_fetched_for_hardware_only() -> None:
    require_vectors()
    entry = case(CASE)
    collateral = load_collateral(require_vectors() / entry["collateral"])
    fake = FakePcs(collateral, pccs=True)
    calls: list[str] = []
    reachable = [True]

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if not reachable[0]:
            raise httpx.ConnectError("down", request=request)
        return fake.handler(request)

    now = [float(entry["at"])]
    monotonic = [0.0]
    fetcher = CollateralFetcher(
        base_url="https://pccs.example:8081",
        client=httpx.Client(transport=httpx.MockTransport(handler)),
        clock=lambda: now[0],
    )
    source = CollateralSource(offline_dir=None, fetcher=fetcher, monotonic=lambda: monotonic[0])
    quote = parse_quote(read(entry["quote"]))
    assert source.own_for(quote, may_fetch=False) is None
    assert calls == []
    assert source.own_for(quote, may_fetch=True) == collateral
    fetched = len(calls)
    assert fetched > 0
    # Expired in the cache and the PCCS down: nothing of our own, and no retry for 60 s.
    now[0] = entry["window"]["not_after"] + 1
    reachable[0] = False
    assert source.own_for(quote, may_fetch=True) is None
    failed = len(calls)
    monotonic[0] = 59.0
    assert source.own_for(quote, may_fetch=True) is None
    assert len(calls) == failed
    monotonic[0] = 61.0
    reachable[0] = True
    assert source.own_for(quote, may_fetch=True) == collateral
    assert len(calls) > failed


def test_offline_sets_of_another_pck_ca_are_not_used(tmp_path: Path) -> None:
    """A set whose PCK CRL is a Processor CA's is not for a Platform-CA quote of the same
    TEE and FMSPC (the corpus has no such pair, so the simulated world makes one)."""
    sim = SimulatedDcap.from_seed(
        b"own collateral",
        not_before=datetime(2025, 1, 1, tzinfo=UTC),
        not_after=datetime(2027, 1, 1, tzinfo=UTC),
    )
    key = hc.derived_key("processor")
    name = x509.Name(
        [x509.NameAttribute(x509.NameOID.COMMON_NAME, "cllm Simulated SGX PCK Processor CA")]
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(datetime(2025, 1, 1, tzinfo=UTC))
        .next_update(datetime(2027, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )
    mine = sim.collateral()
    processor = dataclasses.replace(mine, pck_crl=crl.public_bytes(Encoding.DER))
    (tmp_path / "processor.json").write_text(json.dumps(processor.to_json_dict()))
    quote = parse_quote(sim.quote(report_data=bytes(64)))
    assert (
        CollateralSource(offline_dir=tmp_path, fetcher=None).own_for(quote, may_fetch=False) is None
    )
    (tmp_path / "platform.json").write_text(json.dumps(mine.to_json_dict()))
    source = CollateralSource(offline_dir=tmp_path, fetcher=None)
    assert source.own_for(quote, may_fetch=False) == mine
