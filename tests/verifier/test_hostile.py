"""Hostile appraisals against the verifier service and the client's local verifier: chain bombs
and slow appraisals never stall the event loop (``/healthz`` answers), every appraisal has a
time budget, and malformed text or a defect gives a signed verdict or a refusal with a reason,
never an HTTP 500 or a traceback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

import hostile_chains as hc
from cllm.appraisal import _appraise
from cllm.client import LocalVerifier
from cllm.errors import CollateralFormatError
from cllm.measure import Event
from cllm.tee import load_simulated_world
from cllm.tee._simulated import SimulatedWorld
from cllm.token import verify_token
from cllm.verifier import VerifierSettings, create_app, load_state
from cllm.verify import Collateral
from serving import free_port
from simulated_evidence import simulated_evidence

NOW = 1_790_000_000
SURROGATE = "\ud800"


@pytest.fixture
def world(tmp_path: Path) -> SimulatedWorld:
    return load_simulated_world(tmp_path / "td", clock=lambda: float(NOW))


def _app(world: SimulatedWorld, tmp: Path, **settings: Any) -> FastAPI:
    config = VerifierSettings(
        state_dir=tmp / "verifier",
        trust_simulated_root=world.root_ca_path,
        pccs_url="http://127.0.0.1:9",
        **settings,
    )
    return create_app(load_state(config, clock=lambda: float(NOW)))


def _evidence(world: SimulatedWorld, *, chain: bytes | None = None) -> tuple[dict[str, Any], bytes]:
    """Simulated evidence; with ``chain``, its quote carries that PCK chain instead."""
    dcap = world.dcap
    original = dcap.pck_chain_pem
    if chain is not None:
        dcap.pck_chain_pem = lambda: chain  # type: ignore[method-assign]
    try:
        model = Event(rtmr=3, type="cllm.model", name="model", digest=bytes(48))
        return simulated_evidence(world, (model,))
    finally:
        dcap.pck_chain_pem = original  # type: ignore[method-assign]


def _claims(client: TestClient | httpx.Client, evidence: dict[str, Any], nonce: bytes) -> Any:
    # json.dumps escapes a lone surrogate as \ud800, as a hostile client would send it.
    body = json.dumps({"evidence": evidence, "nonce": nonce.hex()})
    response = client.post(
        "/v1/attestation", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    jwks = client.get("/.well-known/jwks.json").json()
    return verify_token(response.json()["token"], jwks=jwks, now=NOW)


def _codes(claims: Any) -> list[str]:
    return [reason["code"] for reason in claims["reasons"]]


# -- malformed text and defects ------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["tcb_info", "qe_identity", "tcb_info_issuer_chain", "pck_crl_issuer_chain"]
)
def test_lone_surrogate_in_carried_collateral(
    world: SimulatedWorld, tmp_path: Path, field: str
) -> None:
    client = TestClient(_app(world, tmp_path))
    evidence, nonce = _evidence(world)
    value = evidence["collateral"][field]
    evidence["collateral"][field] = value[:10] + SURROGATE + value[10:]
    claims = _claims(client, evidence, nonce)
    assert claims["status"] == "contraindicated"
    assert _codes(claims) == ["collateral_malformed"]
    # The client's own verifier refuses with the same reason, and raises nothing.
    local = LocalVerifier(
        trust_simulated_root=world.root_ca_path,
        pccs_url="http://127.0.0.1:9",
        clock=lambda: float(NOW),
    )
    verdict = local.appraise(evidence, nonce=nonce)
    assert verdict.status == "contraindicated"
    assert [r.code for r in verdict.reasons] == ["collateral_malformed"]
    assert verdict.keys is None


def test_lone_surrogate_in_a_collateral_file(tmp_path: Path) -> None:
    with pytest.raises(CollateralFormatError) as raised:
        Collateral.from_json(json.dumps({"pck_crl_issuer_chain": SURROGATE}))
    assert raised.value.code == "collateral_malformed"


def _raise(*args: object, **kwargs: object) -> None:
    raise RuntimeError("a defect")


def test_unexpected_exception_is_a_signed_internal_error(
    world: SimulatedWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = TestClient(_app(world, tmp_path), raise_server_exceptions=False)
    evidence, nonce = _evidence(world)
    monkeypatch.setattr(_appraise, "check_evidence", _raise)
    claims = _claims(client, evidence, nonce)
    assert claims["status"] == "contraindicated"
    assert _codes(claims) == ["internal_error"]
    assert claims["nonce"] == nonce.hex()
    assert claims["keys"] is None
    local = LocalVerifier(
        trust_simulated_root=world.root_ca_path,
        pccs_url="http://127.0.0.1:9",
        clock=lambda: float(NOW),
    )
    verdict = local.appraise(evidence, nonce=nonce)
    assert (verdict.status, [r.code for r in verdict.reasons]) == (
        "contraindicated",
        ["internal_error"],
    )


def _slowed(seconds: float, entered: threading.Semaphore | None = None) -> Callable[..., Any]:
    original = _appraise.check_evidence

    def slow(*args: Any, **kwargs: Any) -> Any:
        if entered is not None:
            entered.release()
        time.sleep(seconds)
        return original(*args, **kwargs)

    return slow


def test_appraisal_past_its_budget_is_a_signed_timeout(
    world: SimulatedWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = TestClient(_app(world, tmp_path, appraisal_timeout_s=0.3))
    evidence, nonce = _evidence(world)
    monkeypatch.setattr(_appraise, "check_evidence", _slowed(2.0))
    started = time.monotonic()
    claims = _claims(client, evidence, nonce)
    assert time.monotonic() - started < 1.5
    assert claims["status"] == "contraindicated"
    assert _codes(claims) == ["appraisal_timeout"]
    assert claims["nonce"] == nonce.hex()


# -- the event loop stays free -------------------------------------------------------------------


@pytest.fixture
def served(world: SimulatedWorld, tmp_path: Path) -> Iterator[str]:
    app = _app(world, tmp_path, appraisal_timeout_s=1.0)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the verifier did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_healthz_answers_while_hostile_appraisals_run(
    world: SimulatedWorld, served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bombs = [_evidence(world, chain=hc.pck_bomb(world.dcap, total)) for total in range(3, 9)]
    with httpx.Client(base_url=served, timeout=30) as client:
        # Bombs alone: each rejected by shape, at once.
        for evidence, nonce in bombs:
            started = time.monotonic()
            claims = _claims(client, evidence, nonce)
            assert time.monotonic() - started < 1.0
            assert _codes(claims) == ["chain_shape_invalid"]
        # Appraisals that take long whatever the reason (here: slowed on purpose) hold worker
        # threads, never the event loop, and end at the budget.
        entered = threading.Semaphore(0)
        monkeypatch.setattr(_appraise, "check_evidence", _slowed(3.0, entered))
        results: list[list[str]] = []

        def attest(evidence: dict[str, Any], nonce: bytes) -> None:
            with httpx.Client(base_url=served, timeout=30) as own:
                results.append(_codes(_claims(own, evidence, nonce)))

        threads = [threading.Thread(target=attest, args=bomb) for bomb in bombs]
        for thread in threads:
            thread.start()
        for _ in threads:
            assert entered.acquire(timeout=10)  # every appraisal is running now
        started = time.monotonic()
        health = client.get("/healthz")
        assert time.monotonic() - started < 0.5
        assert health.json()["status"] == "ok"
        for thread in threads:
            thread.join(timeout=10)
        assert results == [["appraisal_timeout"]] * len(bombs)


def test_remote_client_reports_the_services_refusal(
    world: SimulatedWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client of the service sees why it refused (a timeout names no keys), not a keys
    mismatch; and gets no keys."""
    from cllm.client import RemoteVerifier

    # A loopback name: the client refuses http:// verifiers anywhere else (issue 13).
    client = TestClient(_app(world, tmp_path, appraisal_timeout_s=0.3), base_url="http://127.0.0.1")
    evidence, nonce = _evidence(world)
    monkeypatch.setattr(_appraise, "check_evidence", _slowed(1.0))
    remote = RemoteVerifier("http://127.0.0.1", http=client, clock=lambda: float(NOW))
    verdict = remote.appraise(evidence, nonce=nonce)
    assert verdict.status == "contraindicated"
    assert [r.code for r in verdict.reasons] == ["appraisal_timeout"]
    assert verdict.keys is None
    assert not verdict.trusted
