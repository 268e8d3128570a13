"""``GET /v1/attestation/report``: fresh evidence bound to the client's nonce and the server's
keys, whose event log names exactly what the server measured; verified by the real verifier."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from cllm.cli import main
from cllm.engine import default_model_path
from cllm.evidence import check_evidence, parse_evidence
from cllm.measure import measure_file
from cllm.quote import parse_quote
from cllm.server._startup import static_dir
from cllm.tee import load_simulated_world
from cllm.token import verify_token
from cllm.verifier import VerifierSettings, create_app, load_state
from serving import ServeProcess, http, ui_events


def _report(served: ServeProcess, nonce: bytes) -> httpx.Response:
    return http.get(f"{served.url}/v1/attestation/report", params={"nonce": nonce.hex()})


def test_evidence_is_bound_to_the_nonce_and_replays(served: ServeProcess) -> None:
    nonce = os.urandom(32)
    evidence = parse_evidence(_report(served, nonce).content)
    assert evidence.tee == "simulated-tdx"
    assert evidence.binding.nonce == nonce
    assert evidence.binding.tls_spki_sha256 is None
    checked = check_evidence(evidence, expected_nonce=nonce)
    assert checked.ok, checked.error
    types = [event["type"] for event in evidence.event_log]
    assert types == [
        "cllm.start",  # each start is marked first (issue 12)
        "cllm.package",
        "cllm.engine",
        "cllm.model",
        *ui_events(),
        "cllm.config",
    ]
    other = check_evidence(evidence, expected_nonce=os.urandom(32))
    assert not other.ok
    assert other.error is not None
    assert other.error.code == "nonce_mismatch"


def test_the_model_event_is_the_gguf_digest(served: ServeProcess) -> None:
    evidence = parse_evidence(_report(served, os.urandom(32)).content)
    model = next(e for e in evidence.event_log if e["type"] == "cllm.model")
    assert model["digest"]["sha384"] == measure_file(default_model_path()).digest.hex()


def test_keys_are_per_process_but_stable_across_reports(served: ServeProcess) -> None:
    first = parse_evidence(_report(served, os.urandom(32)).content).binding
    second = parse_evidence(_report(served, os.urandom(32)).content).binding
    assert first.signing_key == second.signing_key
    assert first.hpke_key == second.hpke_key
    assert first.nonce != second.nonce


@pytest.mark.parametrize("nonce", ["", "00", "zz" * 32, "00" * 31, "00" * 33])
def test_bad_nonces_are_refused(served: ServeProcess, nonce: str) -> None:
    response = http.get(f"{served.url}/v1/attestation/report", params={"nonce": nonce})
    assert response.status_code == 422


def test_missing_nonce_is_refused(served: ServeProcess) -> None:
    assert http.get(f"{served.url}/v1/attestation/report").status_code == 422


def test_the_verifier_appraises_served_evidence(served: ServeProcess, tmp_path: Path) -> None:
    state = Path(served.log_path).parent / "state"
    world = load_simulated_world(state, clock=time.time)
    verifier = load_state(
        VerifierSettings(
            state_dir=tmp_path / "verifier",
            trust_simulated_root=world.root_ca_path,
            pccs_url="http://127.0.0.1:9",
        )
    )
    client = TestClient(create_app(verifier))
    nonce = os.urandom(32)
    evidence = _report(served, nonce).json()
    response = client.post(
        "/v1/attestation", json={"evidence": evidence, "nonce": nonce.hex(), "policy": "default"}
    )
    assert response.status_code == 200
    jwks = client.get("/.well-known/jwks.json").json()
    claims = verify_token(response.json()["token"], jwks=jwks, now=int(time.time()))
    assert claims["status"] == "warning"  # simulated: never better
    assert claims["simulated"] is True
    assert [c["type"] for c in claims["components"]][:4] == [
        "cllm.start",
        "cllm.package",
        "cllm.engine",
        "cllm.model",
    ]
    assert claims["keys"]["hpke_key"] == evidence["binding"]["hpke_key"]


def test_cllm_measure_reproduces_the_served_log(
    served: ServeProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A third party derives the reference values offline from the same artifacts and the
    published configuration, and gets the RTMR3 the server's quote carries."""
    evidence = parse_evidence(_report(served, os.urandom(32)).content)
    config = next(e for e in evidence.event_log if e["type"] == "cllm.config")
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config["details"]))
    ui = ["--ui", str(static_dir())] if ui_events() else []
    assert main(["measure", "--config", str(config_file), *ui, "--json"]) == 0
    offline = json.loads(capsys.readouterr().out)
    assert offline["events"] == list(evidence.event_log)
    quote = parse_quote(evidence.quote)
    assert offline["rtmr3"] == quote.body.rtmrs[3].hex()
