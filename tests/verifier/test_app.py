"""The attestation service end to end (FastAPI TestClient): simulated evidence, tampering,
policies, tokens checked against the served JWKS, and malformed requests."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cllm.evidence import Binding
from cllm.measure import Event
from cllm.tee import SimulatedTdBackend, load_simulated_world
from cllm.token import verify_token
from cllm.verifier import VerifierSettings, create_app, load_state
from simulated_evidence import simulated_evidence
from vectors import case, read, require_vectors

NOW = 1_790_000_000


class Service:
    def __init__(self, tmp: Path, *, trust_simulated: bool, policy_dir: Path | None = None) -> None:
        self.world = load_simulated_world(tmp / "td", clock=lambda: float(NOW))
        settings = VerifierSettings(
            state_dir=tmp / "verifier",
            trust_simulated_root=self.world.root_ca_path if trust_simulated else None,
            policy_dir=policy_dir,
            pccs_url="http://127.0.0.1:9",  # never reached: evidence carries its collateral
        )
        self.clock = [float(NOW)]
        state = load_state(settings, clock=lambda: self.clock[0])
        self.state = state
        self.client = TestClient(create_app(state))
        self.jwks = self.client.get("/.well-known/jwks.json").json()

    def evidence(self, *, debug: bool = False) -> tuple[dict[str, Any], bytes]:
        events = [
            Event(
                rtmr=3,
                type=f"cllm.{kind}",
                name=kind,
                digest=bytes([len(kind)]) * 48,
                # The config says where prompts go (issue 12: else upstream_unknown).
                details={"settings": {"upstream_scope": "embedded"}} if kind == "config" else {},
            )
            for kind in ("package", "model", "config")
        ]
        backend = SimulatedTdBackend(self.world, debug=debug)
        return simulated_evidence(self.world, events, backend=backend)

    def attest(
        self, evidence: dict[str, Any], nonce: bytes, policy: str = "default"
    ) -> dict[str, Any]:
        response = self.client.post(
            "/v1/attestation", json={"evidence": evidence, "nonce": nonce.hex(), "policy": policy}
        )
        assert response.status_code == 200, response.text
        return verify_token(response.json()["token"], jwks=self.jwks, now=int(self.clock[0]))


@pytest.fixture
def trusting(tmp_path: Path) -> Service:
    return Service(tmp_path, trust_simulated=True)


def test_simulated_evidence_is_at_best_warning(trusting: Service) -> None:
    evidence, nonce = trusting.evidence()
    claims = trusting.attest(evidence, nonce)
    assert claims["status"] == "warning"
    # Issue 12: the default policy pins no software, and says so.
    assert [r["code"] for r in claims["reasons"]] == ["no_reference_values", "simulated_evidence"]
    assert claims["reference"]["components"] is False
    assert claims["upstream"] == {"scope": "embedded", "host": None}
    assert claims["simulated"] is True
    assert claims["tee"] == "simulated-tdx"
    assert claims["nonce"] == nonce.hex()
    assert claims["tcb"]["status"] == "UpToDate"
    assert claims["td"]["debug"] is False
    assert [c["type"] for c in claims["components"]] == [
        "cllm.package",
        "cllm.model",
        "cllm.config",
    ]
    assert claims["keys"] == evidence["binding"]
    assert claims["policy"]["id"] == "default"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["iss"] == "cllm-verifier"


def test_simulated_evidence_without_trust_is_contraindicated(tmp_path: Path) -> None:
    service = Service(tmp_path, trust_simulated=False)
    evidence, nonce = service.evidence()
    claims = service.attest(evidence, nonce)
    assert claims["status"] == "contraindicated"
    assert claims["reasons"][0]["code"] == "simulated_not_trusted"
    assert claims["simulated"] is True


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("nonce", "nonce_mismatch"),
        ("swap_keys", "binding_mismatch"),
        ("edit", "rtmr3_mismatch"),
        ("reorder", "rtmr3_mismatch"),
        ("truncate", "rtmr3_mismatch"),
        ("claim_hardware", "tee_mismatch"),
    ],
)
def test_tampering_is_contraindicated(trusting: Service, tamper: str, code: str) -> None:
    evidence, nonce = trusting.evidence()
    if tamper == "nonce":
        nonce = secrets.token_bytes(32)
    elif tamper == "swap_keys":
        evidence["binding"]["hpke_key"] = Binding.with_throwaway_keys(nonce).to_json()["hpke_key"]
    elif tamper == "edit":
        evidence["event_log"][1]["name"] = "other"
    elif tamper == "reorder":
        evidence["event_log"].reverse()
    elif tamper == "truncate":
        evidence["event_log"].pop()
    else:
        evidence["tee"] = "tdx"
    claims = trusting.attest(evidence, nonce)
    assert claims["status"] == "contraindicated"
    assert claims["reasons"][0]["code"] == code


def test_debug_td_is_contraindicated(trusting: Service) -> None:
    evidence, nonce = trusting.evidence(debug=True)
    claims = trusting.attest(evidence, nonce)
    assert claims["status"] == "contraindicated"
    assert [r["code"] for r in claims["reasons"]] == ["debug_td", "no_reference_values"]
    assert claims["td"]["debug"] is True


def test_firmware_log_not_matching_rtmrs(trusting: Service) -> None:
    from cllm.measure import parse_tcg_event_log

    evidence, nonce = trusting.evidence()
    data = bytearray(base64.b64decode(evidence["ccel"]["data"]))
    last = parse_tcg_event_log(bytes(data)).events[-1]
    # TCG_PCR_EVENT2: MR index, event type, digest count (u32 each), algorithm id (u16), digest.
    data[last.offset + 14] ^= 0x01
    evidence["ccel"]["data"] = base64.b64encode(bytes(data)).decode()
    claims = trusting.attest(evidence, nonce)
    assert claims["status"] == "contraindicated"
    assert claims["reasons"][0]["code"] == "ccel_mismatch"


def test_expired_collateral(trusting: Service) -> None:
    evidence, nonce = trusting.evidence()
    trusting.clock[0] = float(NOW + 4 * 365 * 86400)
    claims = trusting.attest(evidence, nonce)
    assert claims["status"] == "contraindicated"
    assert claims["reasons"][0]["code"] == "expired"


def test_policy_mismatch(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "pinned.toml").write_text(
        f'[[components]]\ntype = "cllm.model"\ndigest = ["sha384:{"00" * 48}"]\n'
    )
    service = Service(tmp_path, trust_simulated=True, policy_dir=policies)
    evidence, nonce = service.evidence()
    claims = service.attest(evidence, nonce, policy="pinned")
    assert claims["status"] == "contraindicated"
    # One pinned type is not pinned software (issue 12): no_reference_values as well.
    assert [r["code"] for r in claims["reasons"]] == ["component_mismatch", "no_reference_values"]
    assert claims["policy"]["id"] == "pinned"
    listed = service.client.get("/v1/policies").json()["policies"]
    assert [p["id"] for p in listed] == ["default", "pinned"]


def test_forged_token_is_rejected(trusting: Service) -> None:
    from cllm.errors import VerificationError

    evidence, nonce = trusting.evidence()
    response = trusting.client.post(
        "/v1/attestation", json={"evidence": evidence, "nonce": nonce.hex()}
    )
    token = response.json()["token"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["status"] = "affirming"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(VerificationError) as raised:
        verify_token(f"{header}.{forged_payload}.{signature}", jwks=trusting.jwks, now=NOW)
    assert raised.value.code == "token_bad_signature"


@pytest.mark.parametrize(
    ("case_id", "tcb_status"),
    [
        ("gotdxguest-cos113@20250604", "UpToDate"),
        ("gotdxguest-v5-sample@20260218", "UpToDate"),
        ("dcapqvl-tdx-quote@20260813", "OutOfDate"),
    ],
)
def test_real_quotes_wrapped_as_evidence(trusting: Service, case_id: str, tcb_status: str) -> None:
    """Real Intel quotes with their collateral and evaluation time: the DCAP path runs and the
    token reports their TCB, but a quote cannot be bound to keys it never committed to."""
    require_vectors()
    entry = case(case_id)
    collateral = json.loads((require_vectors() / entry["collateral"]).read_text())
    trusting.clock[0] = float(entry["at"])
    nonce = secrets.token_bytes(32)
    evidence = {
        "version": 1,
        "tee": "tdx",
        "quote": base64.b64encode(read(entry["quote"])).decode(),
        "event_log": [],
        "ccel": None,
        "binding": Binding.with_throwaway_keys(nonce).to_json(),
        "collateral": collateral,
    }
    claims = trusting.attest(evidence, nonce)
    assert claims["status"] == "contraindicated"
    assert [r["code"] for r in claims["reasons"]] == ["binding_mismatch"]
    assert claims["tcb"]["status"] == tcb_status
    assert claims["td"]["mrtd"] == entry["report"]["mrtd"]
    assert claims["simulated"] is False
    # The same quote one second after its collateral expired: both findings are reported.
    trusting.clock[0] = float(entry["window"]["not_after"] + 1)
    late = trusting.attest(evidence, nonce)
    assert [r["code"] for r in late["reasons"]] == ["binding_mismatch", "expired"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"evidence": {}, "nonce": "zz"},
        {"evidence": [], "nonce": "00" * 32},
        {"evidence": {}, "nonce": "00" * 32, "extra": 1},
    ],
)
def test_malformed_requests_are_4xx(trusting: Service, body: dict[str, Any]) -> None:
    assert trusting.client.post("/v1/attestation", json=body).status_code == 422


def test_malformed_evidence_is_a_signed_verdict(trusting: Service) -> None:
    claims = trusting.attest({"version": 1}, secrets.token_bytes(32))
    assert claims["status"] == "contraindicated"
    assert claims["reasons"][0]["code"] == "evidence_malformed"


def test_unknown_policy_is_404(trusting: Service) -> None:
    response = trusting.client.post(
        "/v1/attestation", json={"evidence": {}, "nonce": "00" * 32, "policy": "nope"}
    )
    assert response.status_code == 404


def test_body_limit(trusting: Service) -> None:
    big = {"evidence": {"pad": "x" * (2 * 1024 * 1024)}, "nonce": "00" * 32}
    assert trusting.client.post("/v1/attestation", json=big).status_code == 413


def test_health_cors_and_schema(trusting: Service) -> None:
    assert trusting.client.get("/healthz").json()["status"] == "ok"
    schema = trusting.client.get("/openapi.json").json()
    assert "/v1/attestation" in schema["paths"]
    preflight = trusting.client.options(
        "/v1/attestation",
        headers={"Origin": "https://chat.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", "https://chat.example")


def test_attestation_answer_and_schema_are_unchanged(trusting: Service) -> None:
    # The endpoint builds its answer itself: the bytes JSONResponse({"token": ...}) renders.
    evidence, nonce = trusting.evidence()
    response = trusting.client.post(
        "/v1/attestation", json={"evidence": evidence, "nonce": nonce.hex()}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    token = response.json()["token"]
    assert response.content == json.dumps({"token": token}, separators=(",", ":")).encode()
    assert int(response.headers["content-length"]) == len(response.content)
    # The operation is documented as a FastAPI body parameter would document it.
    schema = trusting.client.get("/openapi.json").json()
    operation = schema["paths"]["/v1/attestation"]["post"]
    assert operation["operationId"] == "attest_v1_attestation_post"
    assert operation["requestBody"] == {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/AttestationRequest"}}
        },
        "required": True,
    }
    assert set(operation["responses"]) == {"200", "422"}
    assert schema["components"]["schemas"]["AttestationRequest"]["required"] == [
        "evidence",
        "nonce",
    ]
    assert list(schema["paths"]["/v1/attestation"]) == ["post"]


def test_memoised_collateral_never_hides_a_change(trusting: Service) -> None:
    from cllm.appraisal import _appraise

    evidence, nonce = trusting.evidence()
    assert trusting.attest(evidence, nonce)["status"] == "warning"  # every memo is warm now
    collateral = evidence["collateral"]
    forged_info = collateral["tcb_info"].replace('"UpToDate"', '"OutOfDate"', 1)
    assert forged_info != collateral["tcb_info"]
    signature = collateral["qe_identity_signature"]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    for field, value, code in (
        ("tcb_info", forged_info, "tcb_info_signature_invalid"),
        ("qe_identity_signature", flipped, "qe_identity_signature_invalid"),
        ("pck_crl", collateral["pck_crl"][:-2], "crl_malformed"),
        ("tcb_info_signature", 7, "collateral_format"),
    ):
        tampered = {**evidence, "collateral": {**collateral, field: value}}
        claims = trusting.attest(tampered, nonce)
        assert claims["status"] == "contraindicated", field
        assert [r["code"] for r in claims["reasons"]] == [code], field
    assert trusting.attest(evidence, nonce)["status"] == "warning"
    # The memo belongs to the service's appraiser (issue 15), not to the module.
    memo = trusting.state.appraiser.collateral_memo_info()
    assert memo.hits > 0
    assert memo.maxsize == _appraise._COLLATERAL_MEMO_ENTRIES
    assert memo.currsize <= memo.maxsize
    # Only objects of strings are memoised, and only small ones.
    assert _appraise._exact_strings({"a": "x", "b": None}) == (("a", "x"), ("b", None))
    assert _appraise._exact_strings({"a": 1}) is None
    assert _appraise._exact_strings({"a": ["x"]}) is None
    assert _appraise._exact_strings({"a": "x" * _appraise._COLLATERAL_MEMO_MAX_CHARS}) is None
