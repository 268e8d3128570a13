"""Carried collateral cannot roll the verifier back: a stale CRL from before a revocation and
stale TCB info from before a TCB recovery lose to the newer set the verifier holds; policy
bounds on the collateral's evaluation number and age."""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cllm.appraisal._freshness import collateral_findings, freshest
from cllm.errors import PolicyError
from cllm.evidence import Binding
from cllm.measure import Event
from cllm.policy import parse_policy
from cllm.tee import load_simulated_world
from cllm.tee._sim_dcap import DEFAULT_TCB_LEVELS, CollateralParams, PlatformTcbLevel
from cllm.token import verify_token
from cllm.verifier import VerifierSettings, create_app, load_state
from cllm.verify import Collateral, TcbStatus, VerificationResult
from simulated_evidence import simulated_evidence
from vectors import case, read, require_vectors

NOW = 1_790_000_000
HOUR = 3600


def _at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class Service:
    def __init__(self, tmp: Path, *, held: list[Collateral], policy: str | None = None) -> None:
        self.world = load_simulated_world(tmp / "td", clock=lambda: float(NOW))
        offline = tmp / "collateral"
        offline.mkdir()
        for number, collateral in enumerate(held):
            (offline / f"{number}.json").write_text(json.dumps(collateral.to_json_dict()))
        policies = None
        if policy is not None:
            policies = tmp / "policies"
            policies.mkdir()
            (policies / "strict.toml").write_text(policy)
        settings = VerifierSettings(
            state_dir=tmp / "verifier",
            trust_simulated_root=self.world.root_ca_path,
            collateral_dir=offline,
            policy_dir=policies,
            pccs_url="http://127.0.0.1:9",  # hardware: the fetch fails at once
        )
        self.clock = [float(NOW)]
        self.client = TestClient(create_app(load_state(settings, clock=lambda: self.clock[0])))
        self.jwks = self.client.get("/.well-known/jwks.json").json()

    def evidence(self, carried: Collateral | None = None) -> tuple[dict[str, Any], bytes]:
        model = Event(rtmr=3, type="cllm.model", name="model", digest=bytes(48))
        return simulated_evidence(self.world, (model,), collateral=carried)

    def attest(self, evidence: dict[str, Any], nonce: bytes, policy: str = "default") -> Any:
        response = self.client.post(
            "/v1/attestation", json={"evidence": evidence, "nonce": nonce.hex(), "policy": policy}
        )
        assert response.status_code == 200, response.text
        return verify_token(response.json()["token"], jwks=self.jwks, now=int(self.clock[0]))


def _world(tmp: Path) -> Any:
    return load_simulated_world(tmp / "td", clock=lambda: float(NOW)).dcap


def _codes(claims: Any) -> list[str]:
    """The reasons' codes, less the two that every verdict on this bare evidence carries (its
    event log has no configuration event and no policy here pins software: issue 12)."""
    unpinned = {"upstream_unknown", "no_reference_values"}
    codes = [reason["code"] for reason in claims["reasons"]]
    assert unpinned <= set(codes) or claims["status"] == "contraindicated"
    return [code for code in codes if code not in unpinned]


def test_stale_carried_crl_after_a_revocation(tmp_path: Path) -> None:
    dcap = _world(tmp_path)
    revoked = dcap.collateral(
        CollateralParams(
            crl_this_update=_at(NOW - HOUR),
            revoked_pck_serials=(dcap.pck_certificate.serial_number,),
        )
    )
    service = Service(tmp_path, held=[revoked])
    evidence, nonce = service.evidence()  # carries the CRL from before the revocation
    claims = service.attest(evidence, nonce)
    assert claims["status"] == "contraindicated"
    assert _codes(claims) == ["certificate_revoked"]


def test_stale_carried_tcb_info_after_a_tcb_recovery(tmp_path: Path) -> None:
    dcap = _world(tmp_path)
    platform_level = DEFAULT_TCB_LEVELS[0]
    recovered = (
        PlatformTcbLevel(
            (8, 8, *platform_level.sgx_tcb_components[2:]),
            platform_level.pce_svn,
            (5, 1, 8, *platform_level.tdx_tcb_components[3:]),
            TcbStatus.UP_TO_DATE,
        ),
        dataclasses.replace(platform_level, status=TcbStatus.OUT_OF_DATE),
        *DEFAULT_TCB_LEVELS[1:],
    )
    newer = dcap.collateral(
        CollateralParams(
            tcb_levels=recovered, issue_date=_at(NOW - HOUR), tcb_evaluation_data_number=18
        )
    )
    service = Service(tmp_path, held=[newer])
    evidence, nonce = service.evidence()  # carries evaluation 17: this platform UpToDate
    claims = service.attest(evidence, nonce)
    assert claims["tcb"]["status"] == "OutOfDate"
    assert claims["status"] == "contraindicated"
    assert _codes(claims) == ["tcb_status_rejected"]


def test_carried_collateral_at_least_as_new_is_used(tmp_path: Path) -> None:
    dcap = _world(tmp_path)
    older = dcap.collateral(CollateralParams(tcb_evaluation_data_number=16))
    service = Service(tmp_path, held=[older])
    evidence, nonce = service.evidence()  # evaluation 17, CRLs as new as the held ones
    claims = service.attest(evidence, nonce)
    assert claims["status"] == "warning"
    assert _codes(claims) == ["simulated_evidence"]


def test_newest_held_pieces_are_the_reference(tmp_path: Path) -> None:
    """The verifier's own set is its newest piece of each kind across its files: here the
    revoking CRL sits in a file whose TCB info is older than another file's."""
    dcap = _world(tmp_path)
    old_revoked = dcap.collateral(
        CollateralParams(
            crl_this_update=_at(NOW - 2 * HOUR),
            revoked_pck_serials=(dcap.pck_certificate.serial_number,),
            tcb_evaluation_data_number=16,
        )
    )
    newest = dcap.collateral(CollateralParams(tcb_evaluation_data_number=18))
    service = Service(tmp_path, held=[old_revoked, newest])
    evidence, nonce = service.evidence()
    assert _codes(service.attest(evidence, nonce)) == ["certificate_revoked"]


# -- piece by piece ------------------------------------------------------------------------------


def test_tcb_info_and_qe_identity_are_never_mixed(tmp_path: Path) -> None:
    dcap = _world(tmp_path)
    own = dcap.collateral(CollateralParams(tcb_evaluation_data_number=17))
    newer = dcap.collateral(CollateralParams(tcb_evaluation_data_number=18))
    older = dcap.collateral(CollateralParams(tcb_evaluation_data_number=16))
    mixed = dataclasses.replace(
        newer,
        qe_identity=older.qe_identity,
        qe_identity_signature=older.qe_identity_signature,
    )
    chosen = freshest(carried=mixed, own=own)
    assert (chosen.tcb_info, chosen.qe_identity) == (own.tcb_info, own.qe_identity)
    chosen = freshest(carried=newer, own=own)
    assert (chosen.tcb_info, chosen.qe_identity) == (newer.tcb_info, newer.qe_identity)


def test_newer_crl_at_the_same_evaluation_wins(tmp_path: Path) -> None:
    dcap = _world(tmp_path)
    carried = dcap.collateral()
    own = dcap.collateral(CollateralParams(crl_this_update=_at(NOW - HOUR)))
    chosen = freshest(carried=carried, own=own)
    assert (chosen.pck_crl, chosen.root_ca_crl) == (own.pck_crl, own.root_ca_crl)
    assert chosen.pck_crl_issuer_chain == own.pck_crl_issuer_chain
    assert chosen.tcb_info == carried.tcb_info  # same evaluation and date: the carried one
    # One second newer than the verifier's: the carried CRL is used.
    newer = dcap.collateral(CollateralParams(crl_this_update=_at(NOW - HOUR + 1)))
    assert freshest(carried=newer, own=own).pck_crl == newer.pck_crl


# -- policy bounds -------------------------------------------------------------------------------


def _result(*, number: int, issued: int) -> VerificationResult:
    return VerificationResult(
        ok=True,
        steps=(),
        error=None,
        evaluated_at=0,
        trust_root="test",
        tcb_evaluation_data_number=number,
        collateral_issued=issued,
    )


def test_max_collateral_age_boundary() -> None:
    policy = parse_policy('[freshness]\nmax_collateral_age = "2h"\n', policy_id="p")
    assert policy.max_collateral_age == 2 * HOUR
    result = _result(number=17, issued=NOW)
    assert collateral_findings(result, policy=policy, at=NOW + 2 * HOUR, hardware=True) == []
    late = collateral_findings(result, policy=policy, at=NOW + 2 * HOUR + 1, hardware=True)
    assert [r.code for r in late] == ["collateral_too_old"]
    # Simulated collateral is issued once, when its world is made: not held to an age.
    assert collateral_findings(result, policy=policy, at=NOW + 9 * HOUR, hardware=False) == []


def test_min_tcb_evaluation_data_number_boundary() -> None:
    policy = parse_policy("[tcb]\nmin_tcb_evaluation_data_number = 17\n", policy_id="p")
    assert (
        collateral_findings(_result(number=17, issued=NOW), policy=policy, at=NOW, hardware=True)
        == []
    )
    low = collateral_findings(_result(number=16, issued=NOW), policy=policy, at=NOW, hardware=False)
    assert [r.code for r in low] == ["tcb_evaluation_data_number_too_low"]


def test_policy_defaults_and_invalid_values() -> None:
    default = parse_policy("", policy_id="d")
    assert default.min_tcb_evaluation_data_number == 0
    assert default.max_collateral_age == 30 * 86400
    assert (
        parse_policy('[freshness]\nmax_collateral_age = "7d"\n', policy_id="p").max_collateral_age
        == 7 * 86400
    )
    for text in (
        '[freshness]\nmax_collateral_age = "0d"\n',
        '[freshness]\nmax_collateral_age = "7w"\n',
        "[freshness]\nmax_collateral_age = 7\n",
        "[tcb]\nmin_tcb_evaluation_data_number = -1\n",
        "[tcb]\nmin_tcb_evaluation_data_number = true\n",
        '[tcb]\nmin_tcb_evaluation_data_number = "17"\n',
    ):
        with pytest.raises(PolicyError):
            parse_policy(text, policy_id="bad")


@pytest.mark.parametrize(
    ("policy", "code"),
    [
        ("[tcb]\nmin_tcb_evaluation_data_number = 999\n", "tcb_evaluation_data_number_too_low"),
        ('[freshness]\nmax_collateral_age = "1h"\n', "collateral_too_old"),
    ],
)
def test_policy_bounds_on_real_hardware_quotes(tmp_path: Path, policy: str, code: str) -> None:
    require_vectors()
    entry = case("gotdxguest-cos113@20250604")
    service = Service(tmp_path, held=[], policy=policy)
    service.clock[0] = float(entry["at"])
    nonce = secrets.token_bytes(32)
    evidence = {
        "version": 1,
        "tee": "tdx",
        "quote": base64.b64encode(read(entry["quote"])).decode(),
        "event_log": [],
        "ccel": None,
        "binding": Binding.with_throwaway_keys(nonce).to_json(),
        "collateral": json.loads((require_vectors() / entry["collateral"]).read_text()),
    }
    assert _codes(service.attest(evidence, nonce)) == ["binding_mismatch"]
    assert _codes(service.attest(evidence, nonce, policy="strict")) == ["binding_mismatch", code]


def test_real_collateral_the_newer_pieces_win_either_way() -> None:
    """Intel's real data: two sets for one platform (same TDX FMSPC, Platform CA),
    both valid at one time; whichever is carried, the newer pieces are used, and the result
    verifies the real quote."""
    from cllm.verify import QuoteVerifier, intel_root, load_collateral

    root = require_vectors()
    older_case = case("dcapqvl-tdx-quote@20250813")
    newer_case = case("dcapqvl-tdx-quote@20250819")
    older = load_collateral(root / older_case["collateral"])
    newer = load_collateral(root / newer_case["collateral"])
    assert older.tcb_info != newer.tcb_info
    for carried, own in ((older, newer), (newer, older)):
        chosen = freshest(carried=carried, own=own)
        assert (chosen.tcb_info, chosen.qe_identity) == (newer.tcb_info, newer.qe_identity)
        assert chosen.pck_crl == max(
            (older.pck_crl, newer.pck_crl),
            key=lambda der: _crl_this_update(der),
        )
    at = min(older_case["window"]["not_after"], newer_case["window"]["not_after"])
    merged = freshest(carried=older, own=newer)
    result = QuoteVerifier(trust_root=intel_root()).verify(read(older_case["quote"]), merged, at=at)
    assert result.ok, result.error
    assert result.tcb_evaluation_data_number == 17


def _crl_this_update(der: bytes) -> int:
    from cllm.verify._pki import parse_crl

    return parse_crl(der, "PCK CRL").validity.not_before
