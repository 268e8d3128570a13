"""The appraisal's step table (issue 15): numbered and named, fail-closed when a step stops or
breaks, the policy only on verified facts, and simulated evidence capped, whatever is added."""

from __future__ import annotations

import pytest

from cllm.appraisal import EvidenceAppraiser, Status, Trust
from cllm.policy import default_policy
from cllm.tee import load_simulated_world
from cllm.tee._simulated import SimulatedWorld
from simulated_evidence import simulated_evidence

NOW = 1_790_000_000
GPU_STEPS = ["gpu_present", "gpu_parse", "gpu_binding", "gpu_state", "gpu_roots", "gpu_nonce"]
GPU_STEPS += ["gpu_verify", "gpu_policy"]  # issue 17 (gpuev): between dcap and policy
STEPS = ["parse", "binding_and_logs", "root", "collateral", "dcap", *GPU_STEPS, "policy", "caps"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> SimulatedWorld:
    return load_simulated_world(tmp_path_factory.mktemp("td"), clock=lambda: float(NOW))


def _appraiser(world: SimulatedWorld) -> EvidenceAppraiser:
    return Trust.offline().with_simulated_root(world.root_ca_path).appraiser()


def test_every_step_is_named_numbered_and_run(world: SimulatedWorld) -> None:
    appraiser = _appraiser(world)
    assert appraiser.step_names == tuple(STEPS)
    assert appraiser.trust is not None
    assert appraiser.trust.simulated_root_path == world.root_ca_path
    document, nonce = simulated_evidence(world)
    verdict = appraiser.appraise(document, nonce=nonce, policy=default_policy(), at=NOW)
    assert verdict.status is Status.WARNING
    assert [(s.number, s.name, s.ran) for s in verdict.steps] == [
        (n, name, True) for n, name in enumerate(STEPS, start=1)
    ]
    by_name = {step.name: step.codes for step in verdict.steps}
    assert by_name["caps"] == ("simulated_evidence",)
    assert "no_reference_values" in by_name["policy"]


def test_a_parse_failure_skips_every_later_step(world: SimulatedWorld) -> None:
    verdict = _appraiser(world).appraise(
        {"version": 1}, nonce=bytes(32), policy=default_policy(), at=NOW
    )
    assert verdict.status is Status.CONTRAINDICATED
    assert [r.code for r in verdict.reasons] == ["evidence_malformed"]
    assert [step.ran for step in verdict.steps] == [True] + [False] * (len(STEPS) - 1)


def test_the_policy_never_judges_unverified_facts(world: SimulatedWorld) -> None:
    """A quote under the wrong time: DCAP fails, so the policy does not run and nothing caps."""
    document, nonce = simulated_evidence(world)
    verdict = _appraiser(world).appraise(
        document, nonce=nonce, policy=default_policy(), at=NOW + 10 * 365 * 86400
    )
    assert verdict.status is Status.CONTRAINDICATED
    steps = {step.name: step for step in verdict.steps}
    assert steps["dcap"].codes == ("expired",)
    assert steps["policy"].ran
    assert steps["policy"].codes == ()
    assert verdict.claims["reference"] is None


def test_a_step_that_stops_silently_fails_closed(
    world: SimulatedWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A defective added step that stops the run without saying why cannot leave a verdict
    better than contraindicated, even though the policy already judged."""
    appraiser = _appraiser(world)
    steps = list(appraiser._steps)
    steps.insert(len(steps) - 1, ("silent", lambda run: False))  # after the policy, before caps
    monkeypatch.setattr(appraiser, "_steps", tuple(steps))
    document, nonce = simulated_evidence(world)
    verdict = appraiser.appraise(document, nonce=nonce, policy=default_policy(), at=NOW)
    assert verdict.status is Status.CONTRAINDICATED
    assert verdict.reasons[-1].code == "appraisal_incomplete"
    assert [(s.name, s.ran) for s in verdict.steps][-2:] == [("silent", True), ("caps", False)]


def test_a_step_that_breaks_is_an_internal_error(
    world: SimulatedWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    appraiser = _appraiser(world)

    def broken(run: object) -> bool:
        raise RuntimeError("a defect")

    steps = list(appraiser._steps)
    steps.insert(5, ("broken", broken))
    monkeypatch.setattr(appraiser, "_steps", tuple(steps))
    document, nonce = simulated_evidence(world)
    verdict = appraiser.appraise(document, nonce=nonce, policy=default_policy(), at=NOW)
    assert verdict.status is Status.CONTRAINDICATED
    assert [r.code for r in verdict.reasons] == ["internal_error"]
    assert verdict.claims["keys"] is None  # nothing about the evidence is claimed
    assert verdict.steps[-1].name == "broken"


def test_the_memos_belong_to_the_appraiser(world: SimulatedWorld) -> None:
    first, second = _appraiser(world), _appraiser(world)
    document, nonce = simulated_evidence(world)
    first.appraise(document, nonce=nonce, policy=default_policy(), at=NOW)
    assert first.collateral_memo_info().currsize == 1
    assert second.collateral_memo_info().currsize == 0
