"""One set of evidence documents through the three compositions of the appraisal (issue 15): the
verifier service (the real FastAPI app, its token checked against its JWKS), the SDK's
``LocalVerifier``, and ``cllm evidence check --json`` in a subprocess. All three are built by
``cllm.appraisal.Trust``; they must agree on the status, the reason codes in order, and the
claims, for genuine, untrusted-simulated, tampered and foreign-root evidence alike."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cllm.client import LocalVerifier
from cllm.measure import Event
from cllm.tee import load_simulated_world
from cllm.tee._simulated import SimulatedWorld
from cllm.token import verify_token
from cllm.verifier import VerifierSettings, create_app, load_state
from simulated_evidence import simulated_evidence

NOW = 1_790_000_000
UNREACHABLE_PCCS = "http://127.0.0.1:9"  # never reached: the evidence carries its collateral
CLAIMS = ("nonce", "tee", "simulated", "tcb", "td", "components", "keys", "policy", "reference")
CLAIMS += ("upstream",)


def _evidence(world: SimulatedWorld) -> tuple[dict[str, Any], bytes]:
    """Evidence as ``cllm serve`` builds it: a simulated TD, its startup components measured
    into RTMR3, fresh keys bound to the client's nonce, the world's collateral carried."""
    events = [
        Event(
            rtmr=3,
            type=f"cllm.{kind}",
            name=kind,
            digest=bytes([len(kind)]) * 48,
            details={"settings": {"upstream_scope": "embedded"}} if kind == "config" else {},
        )
        for kind in ("package", "engine", "model", "config")
    ]
    return simulated_evidence(world, events)


class Three:
    """The service, LocalVerifier and the CLI, all trusting ``root`` (or no simulation root)."""

    def __init__(self, tmp: Path, root: Path | None) -> None:
        settings = VerifierSettings(
            state_dir=tmp / "verifier",
            trust_simulated_root=root,
            pccs_url=UNREACHABLE_PCCS,
        )
        self.client = TestClient(create_app(load_state(settings, clock=lambda: float(NOW))))
        self.jwks = self.client.get("/.well-known/jwks.json").json()
        self.local = LocalVerifier(
            trust_simulated_root=root, pccs_url=UNREACHABLE_PCCS, clock=lambda: float(NOW)
        )
        self.root = root
        self.tmp = tmp

    def service(self, document: dict[str, Any], nonce: bytes) -> dict[str, Any]:
        response = self.client.post(
            "/v1/attestation", json={"evidence": document, "nonce": nonce.hex()}
        )
        assert response.status_code == 200, response.text
        return verify_token(response.json()["token"], jwks=self.jwks, now=NOW)

    def sdk(self, document: dict[str, Any], nonce: bytes) -> dict[str, Any]:
        return self.local.appraise(document, nonce=nonce).to_json()

    def cli(self, document: dict[str, Any], nonce: bytes) -> tuple[int, dict[str, Any]]:
        path = self.tmp / f"evidence-{os.urandom(4).hex()}.json"
        path.write_text(json.dumps(document))
        argv = ["evidence", "check", str(path), "--nonce", nonce.hex(), "--at", str(NOW)]
        if self.root is not None:
            argv += ["--trust-simulated-root", str(self.root)]
        launch = "import sys; from cllm.cli import main; sys.exit(main(sys.argv[1:]))"
        done = subprocess.run(
            [sys.executable, "-c", launch, *argv, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return done.returncode, json.loads(done.stdout)

    def agree(self, document: dict[str, Any], nonce: bytes) -> tuple[str, list[str], int]:
        """Run all three; assert they agree; return (status, reason codes, CLI exit code)."""
        service, sdk = self.service(document, nonce), self.sdk(document, nonce)
        exit_code, cli = self.cli(document, nonce)
        codes = [[r["code"] for r in doc["reasons"]] for doc in (service, sdk, cli)]
        assert codes[0] == codes[1] == codes[2], codes
        statuses = [doc["status"] for doc in (service, sdk, cli)]
        assert statuses[0] == statuses[1] == statuses[2], statuses
        for name in CLAIMS:
            assert service[name] == sdk[name] == cli[name], name
        # The CLI exits as `cllm verify` does: 0 for affirming or warning, 1 contraindicated.
        assert exit_code == (1 if statuses[0] == "contraindicated" else 0), cli
        # The SDK hands out keys exactly when the rule permits them.
        assert (self.local.appraise(document, nonce=nonce).keys is not None) == (
            statuses[0] != "contraindicated"
        )
        return statuses[0], codes[0], exit_code


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulatedWorld, SimulatedWorld]:
    base = tmp_path_factory.mktemp("worlds")
    ours = load_simulated_world(base / "ours", clock=lambda: float(NOW))
    foreign = load_simulated_world(base / "foreign", clock=lambda: float(NOW))
    return ours, foreign


@pytest.fixture(scope="module")
def trusting(
    tmp_path_factory: pytest.TempPathFactory, worlds: tuple[SimulatedWorld, SimulatedWorld]
) -> Three:
    return Three(tmp_path_factory.mktemp("trusting"), worlds[0].root_ca_path)


@pytest.fixture(scope="module")
def untrusting(tmp_path_factory: pytest.TempPathFactory) -> Three:
    return Three(tmp_path_factory.mktemp("untrusting"), None)


def test_genuine_simulated_evidence_is_warning_everywhere(
    trusting: Three, worlds: tuple[SimulatedWorld, SimulatedWorld]
) -> None:
    document, nonce = _evidence(worlds[0])
    status, codes, exit_code = trusting.agree(document, nonce)
    # Simulated evidence under the operator's root: never affirming, never "verified".
    assert (status, exit_code) == ("warning", 0)
    assert codes == ["no_reference_values", "simulated_evidence"]


def test_simulated_evidence_under_no_trusted_root(
    untrusting: Three, worlds: tuple[SimulatedWorld, SimulatedWorld]
) -> None:
    document, nonce = _evidence(worlds[0])
    status, codes, _ = untrusting.agree(document, nonce)
    assert status == "contraindicated"
    # Named as untrusted, and what Intel's root (the only one trusted) makes of it.
    assert codes == ["simulated_not_trusted", "chain_untrusted"]


def test_foreign_root_is_refused(
    trusting: Three, worlds: tuple[SimulatedWorld, SimulatedWorld]
) -> None:
    document, nonce = _evidence(worlds[1])
    status, codes, _ = trusting.agree(document, nonce)
    assert (status, codes) == ("contraindicated", ["chain_untrusted"])


def _swap_key(document: dict[str, Any]) -> None:
    document["binding"]["hpke_key"] = base64.b64encode(os.urandom(32)).decode()


def _flip_quote_signature(document: dict[str, Any]) -> None:
    quote = bytearray(base64.b64decode(document["quote"]))
    quote[48 + 584 + 4 + 10] ^= 0x01  # a bit of the quote's ECDSA signature (TDX quote v4)
    document["quote"] = base64.b64encode(bytes(quote)).decode()


def _flip_quote_body(document: dict[str, Any]) -> None:
    quote = bytearray(base64.b64decode(document["quote"]))
    quote[48 + 136] ^= 0x80  # a bit of MRTD: the signed body no longer matches its signature
    document["quote"] = base64.b64encode(bytes(quote)).decode()


def _edit_log(document: dict[str, Any]) -> None:
    document["event_log"][-1]["details"]["settings"]["upstream_scope"] = "remote"


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (_swap_key, ["binding_mismatch"]),
        (_flip_quote_signature, ["quote_signature_invalid"]),
        (_flip_quote_body, ["quote_signature_invalid"]),
        (_edit_log, ["rtmr3_mismatch"]),
    ],
    ids=["binding", "quote-signature-bit", "quote-body-bit", "event-log"],
)
def test_tampered_evidence_is_refused_alike(
    trusting: Three,
    worlds: tuple[SimulatedWorld, SimulatedWorld],
    tamper: Callable[[dict[str, Any]], None],
    expected: list[str],
) -> None:
    document, nonce = _evidence(worlds[0])
    tamper(document)
    status, codes, exit_code = trusting.agree(document, nonce)
    assert (status, exit_code) == ("contraindicated", 1)
    assert codes == expected


def test_the_cli_reports_the_steps(
    trusting: Three, worlds: tuple[SimulatedWorld, SimulatedWorld]
) -> None:
    """`cllm evidence check --json` names every appraisal step, numbered, and which ran."""
    document, nonce = _evidence(worlds[0])
    _edit_log(document)
    _, doc = trusting.cli(document, nonce)
    steps = {step["name"]: step for step in doc["steps"]}
    assert [step["number"] for step in doc["steps"]] == list(range(1, len(steps) + 1))
    assert list(steps)[:5] == ["parse", "binding_and_logs", "root", "collateral", "dcap"]
    assert list(steps)[-2:] == ["policy", "caps"]
    assert steps["binding_and_logs"]["codes"] == ["rtmr3_mismatch"]
    assert steps["dcap"] == {"number": 5, "name": "dcap", "ran": True, "codes": []}
    assert doc["ok"] is False
    assert doc["error"]["code"] == "rtmr3_mismatch"
