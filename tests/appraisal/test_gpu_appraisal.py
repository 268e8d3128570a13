"""GPU evidence per attestation, appraised (docs/protocol.md "GPU evidence", docs/policy.md
"[gpu]"): a real server (``build_runtime`` + its ASGI app, in process) with a simulated GPU
answers ``/v1/attestation/report``; the local verifier judges it. Each attack on the GPU side
(a replaying or substituted GPU, a dropped or doubled report, DevTools, changed firmware, a
document that does not match its binding, an untrusted simulated root) ends in its exact code.
"""

from __future__ import annotations

import base64
import copy
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cllm.appraisal import GpuClaim, Trust
from cllm.client import LocalVerifier, Verification
from cllm.errors import GpuError
from cllm.evidence import Binding, build_evidence, parse_evidence
from cllm.gpu import (
    GpuEvidence,
    SelectedGpuBackend,
    SimulatedGpuBackend,
    gpu_document_digest,
    gpu_nonce,
    load_simulated_gpu,
    parse_report,
)
from cllm.policy import parse_policy
from cllm.server import ServeSettings, build_runtime, create_app

# SPDM block 37 = RIM index 36, active in the simulated VBIOS RIM (index 35, NVDEC0, is skipped:
# the simulated GPU reports NVDEC0 disabled).
MEASURED_INDEX = 37


class Misbehaving:
    """A GPU side that is honest at boot (the gate passes) and then, per attestation, does
    what an attacker on the host's GPU path would: replay, substitute, drop, double."""

    def __init__(self, inner: SimulatedGpuBackend, mutate: str, other: Any = None) -> None:
        self.inner, self.mutate, self.other = inner, mutate, other
        self.calls = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def collect(self, nonce: bytes) -> tuple[GpuEvidence, ...]:
        self.calls += 1
        if self.calls == 1:  # the boot gate
            return self.inner.collect(nonce)
        if self.mutate == "replay":
            return self.inner.collect(os.urandom(32))
        if self.mutate == "other_gpu":
            return self.other.collect(nonce)  # type: ignore[no-any-return]
        if self.mutate == "drop":
            return ()
        if self.mutate == "twice":
            [one] = self.inner.collect(nonce)
            return (one, GpuEvidence(1, one.report, one.chain_pem))
        if self.mutate == "firmware":
            return self.other.collect(nonce)  # type: ignore[no-any-return]
        raise AssertionError(self.mutate)


@dataclass
class Served:
    client: TestClient
    state: Path
    gpu_root: Path
    gpu: SimulatedGpuBackend

    def evidence(self, nonce: bytes) -> dict[str, Any]:
        answer = self.client.get("/v1/attestation/report", params={"nonce": nonce.hex()})
        assert answer.status_code == 200, answer.text
        doc: dict[str, Any] = answer.json()
        return doc

    def verifier(self, *, gpu_root: bool = True, policy: str | None = None) -> LocalVerifier:
        return LocalVerifier(
            trust_simulated_root=self.state / "simulated" / "root-ca.pem",
            trust_simulated_gpu_root=self.gpu_root if gpu_root else None,
            policy=parse_policy(policy, policy_id="gpu-test") if policy else None,
        )


def _serve(tmp: Path, backend: object, **settings: object) -> Iterator[Served]:
    engine = tmp / "engine.bin"
    engine.write_bytes(b"upstream engine")
    config = ServeSettings(
        state_dir=tmp / "state",
        tee="simulated",
        engine="openai",
        upstream="http://127.0.0.1:9",
        model="m",
        measure=(engine,),
        **settings,  # type: ignore[arg-type]
    )
    runtime, _ = build_runtime(
        config,
        argv=["cllm", "serve"],
        clock=time.time,
        gpu_backend=SelectedGpuBackend(backend, "injected"),  # type: ignore[arg-type]
    )
    gpu = load_simulated_gpu(tmp / "state", clock=time.time)
    device, rim = gpu.root_pems()
    root = tmp / "gpu-root.pem"
    root.write_bytes(device + rim)
    with TestClient(create_app(runtime)) as client:
        yield Served(client, tmp / "state", root, gpu)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    yield from _serve(tmp_path, load_simulated_gpu(tmp_path / "state", clock=time.time))


def _codes(result: Verification) -> list[str]:
    return [reason.code for reason in result.reasons]


def _attest(served: Served, verifier: LocalVerifier | None = None) -> Verification:
    nonce = os.urandom(32)
    return (verifier or served.verifier()).appraise(served.evidence(nonce), nonce=nonce)


# the honest path ---------------------------------------------------------------------------


def test_simulated_gpu_is_verified_bound_and_never_above_warning(served: Served) -> None:
    nonce = os.urandom(32)
    doc = served.evidence(nonce)
    evidence = parse_evidence(doc)
    assert doc["gpu"]["version"] == 1 and doc["gpu"]["status"] == "attested"
    assert doc["gpu"]["simulated"] is True
    # The binding commits to the field's digest, and each report to the derived nonce.
    assert evidence.binding.gpu_sha384 == gpu_document_digest(doc["gpu"])
    assert evidence.batch is not None
    expected = gpu_nonce(anchor=evidence.batch.root, keys_digest=evidence.binding.keys_digest())
    report = parse_report(base64.b64decode(doc["gpu"]["reports"][0]["evidence"]))
    assert report.request_nonce == expected
    result = served.verifier().appraise(doc, nonce=nonce)
    assert result.status == "warning"
    assert "simulated_gpu" in _codes(result) and "simulated_evidence" in _codes(result)
    [gpu] = result.claims["gpus"]
    assert GpuClaim.model_validate(gpu).model_dump() == gpu  # the shared contract, exactly
    assert gpu["status"] == "verified" and gpu["simulated"] is True and gpu["error"] is None
    assert gpu["arch"] == "hopper" and gpu["mode"] == "cc" and gpu["ocsp"] == "good"
    assert gpu["measurements"] == {"result": "matched", "mismatched_indices": []}
    assert gpu["driver_version"] == "570.124.03" and gpu["vbios_version"] == "96.00.5E.00.04"
    assert gpu["hwmodel"] == "GH100 A01 GSP BROM" and gpu["ueid"]
    assert sorted(gpu["rim_ids"]) == [
        "NV_GPU_DRIVER_GH100_570.124.03",
        "NV_GPU_VBIOS_1010_0205_862_96005E0004",
    ]


def test_the_gpu_steps_are_entries_of_the_appraisal_table(served: Served) -> None:
    appraiser = Trust.offline().appraiser()
    names = appraiser.step_names
    gpu_steps = [name for name in names if name.startswith("gpu_")]
    assert gpu_steps == [
        "gpu_present",
        "gpu_parse",
        "gpu_binding",
        "gpu_state",
        "gpu_roots",
        "gpu_nonce",
        "gpu_verify",
        "gpu_policy",
    ]
    assert names.index("dcap") < names.index("gpu_present") < names.index("policy")


def test_a_machine_without_gpus_keeps_its_verdict_and_claims_no_gpus(tmp_path: Path) -> None:
    from cllm.gpu import NoGpuBackend

    for served in _serve(tmp_path, NoGpuBackend()):
        nonce = os.urandom(32)
        doc = served.evidence(nonce)
        assert "gpu" not in doc and "gpu_sha384" not in doc["binding"]
        result = served.verifier().appraise(doc, nonce=nonce)
        assert result.status == "warning"
        assert result.claims["gpus"] == []
        assert not [code for code in _codes(result) if "gpu" in code]
        required = served.verifier(policy="[gpu]\nrequired = true\n").appraise(doc, nonce=nonce)
        assert required.status == "contraindicated"
        assert "gpu_required" in _codes(required)


# the verifier's trust ----------------------------------------------------------------------


def test_a_simulated_gpu_under_a_verifier_that_does_not_trust_its_root(served: Served) -> None:
    result = _attest(served, served.verifier(gpu_root=False))
    assert result.status == "contraindicated"
    assert _codes(result) == ["simulated_gpu_not_trusted"]
    assert result.claims["gpus"][0]["status"] == "rejected"


def test_a_simulated_gpu_claimed_as_nvidia_hardware_fails_under_nvidia_roots(
    served: Served,
) -> None:
    """The server's ``simulated`` flag only picks the roots: flipping it (and re-binding, as a
    lying server could) gets the report checked under NVIDIA's roots."""
    doc = _rebound(served, lambda gpu: gpu.update(simulated=False))
    result = served.verifier().appraise(doc["document"], nonce=doc["nonce"])
    assert "gpu_chain_untrusted" in _codes(result)
    assert result.status == "contraindicated"


def test_nvidia_roots_cannot_be_trusted_as_a_simulated_gpu_root(tmp_path: Path) -> None:
    from cllm.appraisal import load_simulated_gpu_root
    from cllm.errors import CllmError
    from cllm.gpu._roots import NVIDIA_DEVICE_ROOT_PEM, NVIDIA_RIM_ROOT_PEM

    pem = tmp_path / "nvidia.pem"
    pem.write_text(NVIDIA_DEVICE_ROOT_PEM + NVIDIA_RIM_ROOT_PEM)
    with pytest.raises(CllmError) as refused:
        load_simulated_gpu_root(pem)
    assert refused.value.code == "config_invalid"
    with pytest.raises(CllmError) as refused:
        LocalVerifier(trust_simulated_gpu_root=tmp_path / "missing.pem")
    assert refused.value.code == "config_invalid"


# attacks on the wire (a man in the middle) -------------------------------------------------


def test_gpu_evidence_replayed_from_another_attestation_is_refused(served: Served) -> None:
    old = served.evidence(os.urandom(32))
    nonce = os.urandom(32)
    doc = served.evidence(nonce)
    doc["gpu"] = old["gpu"]  # the GPU reports of another client's attestation
    result = served.verifier().appraise(doc, nonce=nonce)
    assert result.status == "contraindicated"
    assert _codes(result) == ["gpu_evidence_digest_mismatch"]
    # ... and re-pointing the binding at them breaks the quote's binding.
    doc["binding"]["gpu_sha384"] = old["binding"]["gpu_sha384"]
    result = served.verifier().appraise(doc, nonce=nonce)
    assert "binding_mismatch" in _codes(result)


@pytest.mark.parametrize("edit", ["drop", "add", "swap_chain", "status"])
def test_gpu_evidence_edited_after_the_quote_is_refused(served: Served, edit: str) -> None:
    nonce = os.urandom(32)
    doc = served.evidence(nonce)
    reports = doc["gpu"]["reports"]
    if edit == "drop":
        reports.clear()
        doc["gpu"]["status"], doc["gpu"]["reason"] = "unattested", "gpu_cc_off"
    elif edit == "add":
        reports.append({**copy.deepcopy(reports[0]), "index": 1})
    elif edit == "swap_chain":
        reports[0]["certificate"] = reports[0]["certificate"][:-8] + "AAAAAAA="
    else:
        doc["gpu"]["cc"] = "off"
    result = served.verifier().appraise(doc, nonce=nonce)
    assert result.status == "contraindicated"
    assert _codes(result) == ["gpu_evidence_digest_mismatch"]


def test_gpu_field_stripped_or_smuggled_in(served: Served) -> None:
    nonce = os.urandom(32)
    doc = served.evidence(nonce)
    stripped = {k: v for k, v in doc.items() if k != "gpu"}
    result = served.verifier().appraise(stripped, nonce=nonce)
    assert _codes(result) == ["gpu_evidence_missing"]
    # Removing the digest from the binding as well breaks the quote's binding.
    stripped["binding"] = {k: v for k, v in doc["binding"].items() if k != "gpu_sha384"}
    result = served.verifier().appraise(stripped, nonce=nonce)
    assert "binding_mismatch" in _codes(result)
    unbound = copy.deepcopy(doc)
    del unbound["binding"]["gpu_sha384"]
    result = served.verifier().appraise(unbound, nonce=nonce)
    assert "gpu_evidence_unbound" in _codes(result)
    assert result.status == "contraindicated"


def test_malformed_gpu_field_is_a_typed_refusal(served: Served) -> None:
    nonce = os.urandom(32)
    doc = served.evidence(nonce)
    doc["gpu"]["reports"][0]["evidence"] = "not base64!"
    result = served.verifier().appraise(doc, nonce=nonce)
    assert _codes(result) == ["gpu_evidence_malformed"]


# attacks on the GPU side (the quote vouches for what the TD received) ----------------------


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        ("replay", "gpu_nonce_mismatch"),
        ("other_gpu", "gpu_chain_untrusted"),
        ("drop", "gpu_unattested"),
        ("twice", "gpu_report_missing"),
    ],
)
def test_gpu_side_attacks_after_boot_end_in_their_code(
    tmp_path: Path, mutate: str, code: str
) -> None:
    honest = load_simulated_gpu(tmp_path / "state", clock=time.time)
    other = load_simulated_gpu(tmp_path / "other", clock=time.time)
    for served in _serve(tmp_path, Misbehaving(honest, mutate, other)):
        nonce = os.urandom(32)
        doc = served.evidence(nonce)
        result = served.verifier().appraise(doc, nonce=nonce)
        if mutate == "drop":
            # No reports at all: the server states the GPU unattested (never an empty pass).
            assert doc["gpu"]["status"] == "unattested"
            assert doc["gpu"]["reason"] == "gpu_unavailable"
            assert "gpu_unattested" in _codes(result) and result.status == "warning"
            assert result.claims["gpus"][0]["status"] == "unattested"
        else:
            assert result.status == "contraindicated"
            assert code in _codes(result)
            assert "simulated_gpu" not in _codes(result)


def test_a_gpu_shown_twice_counts_once(tmp_path: Path) -> None:
    """Two present GPUs, the second answering with the first's report: one device twice."""
    honest = load_simulated_gpu(tmp_path / "state", clock=time.time)

    class TwoGpus(Misbehaving):
        def devices(self) -> tuple[Any, ...]:
            [one] = self.inner.devices()
            return (one, type(one)(**{**one.to_dict(), "index": 1}))

        def collect(self, nonce: bytes) -> tuple[GpuEvidence, ...]:
            [one] = self.inner.collect(nonce)
            return (one, GpuEvidence(1, one.report, one.chain_pem))

    with pytest.raises(GpuError) as refused:  # the boot gate refuses it first
        list(_serve(tmp_path, TwoGpus(honest, "twice")))
    assert refused.value.code == "gpu_evidence_rejected"
    assert "gpu_bundle_duplicate_device" in refused.value.message


def test_changed_gpu_firmware_is_a_measurement_mismatch(tmp_path: Path) -> None:
    honest = load_simulated_gpu(tmp_path / "state", clock=time.time)
    changed = honest.with_faults(changed_blocks=frozenset({MEASURED_INDEX}))
    for served in _serve(tmp_path, Misbehaving(honest, "firmware", changed)):
        result = _attest(served)
        assert result.status == "contraindicated"
        assert "gpu_measurement_mismatch" in _codes(result)
        [gpu] = result.claims["gpus"]
        assert GpuClaim.model_validate(gpu).model_dump() == gpu
        assert gpu["status"] == "rejected"
        assert gpu["measurements"] == {
            "result": "mismatched",
            "mismatched_indices": [MEASURED_INDEX - 1],
        }
        assert gpu["error"]["code"] == "gpu_measurement_mismatch"


def test_devtools_gpus_are_stated_unattested_and_judged_so(tmp_path: Path) -> None:
    devtools = load_simulated_gpu(tmp_path / "state", clock=time.time).with_faults(devtools=True)
    for served in _serve(tmp_path, devtools, gpu="optional"):
        nonce = os.urandom(32)
        doc = served.evidence(nonce)
        assert doc["gpu"]["status"] == "unattested"
        assert doc["gpu"]["reason"] == "gpu_devtools_mode" and doc["gpu"]["cc"] == "devtools"
        assert doc["gpu"]["present"][0]["arch"] == "HOPPER"
        result = served.verifier().appraise(doc, nonce=nonce)
        # cc = devtools is refused outright, whatever the policy.
        assert result.status == "contraindicated"
        assert _codes(result)[-1] == "gpu_devtools_mode"
        [gpu] = result.claims["gpus"]
        assert gpu["status"] == "unattested" and gpu["mode"] == "devtools"


def test_devtools_gpu_with_reports_is_refused(served: Served) -> None:
    """A document that carries reports but says the GPUs run in DevTools mode."""
    doc = _rebound(served, lambda gpu: gpu.update(cc="devtools"))
    result = served.verifier().appraise(doc["document"], nonce=doc["nonce"])
    assert result.status == "contraindicated"
    assert _codes(result) == ["gpu_devtools_mode"]


def test_required_devtools_refuses_to_start(tmp_path: Path) -> None:
    devtools = load_simulated_gpu(tmp_path / "state", clock=time.time).with_faults(devtools=True)
    with pytest.raises(GpuError) as refused:
        list(_serve(tmp_path, devtools, gpu="required"))
    assert refused.value.code == "gpu_devtools_mode"


def test_unattested_gpus_with_cc_off_warn_by_default_and_fail_a_requiring_policy(
    tmp_path: Path,
) -> None:
    honest = load_simulated_gpu(tmp_path / "state", clock=time.time)

    class CcOff(Misbehaving):
        def cc_state(self) -> Any:
            from cllm.gpu import GpuCcState

            return GpuCcState(False, False, "prod", "none", None)

        def collect(self, nonce: bytes) -> tuple[GpuEvidence, ...]:
            raise GpuError("CC is off", code="gpu_cc_off")

    for served in _serve(tmp_path, CcOff(honest, "-"), gpu="optional"):
        nonce = os.urandom(32)
        doc = served.evidence(nonce)
        assert doc["gpu"]["status"] == "unattested" and doc["gpu"]["reason"] == "gpu_cc_off"
        assert doc["gpu"]["cc"] == "off" and len(doc["gpu"]["present"]) == 1
        result = served.verifier().appraise(doc, nonce=nonce)
        assert result.status == "warning" and "gpu_unattested" in _codes(result)
        [gpu] = result.claims["gpus"]
        assert GpuClaim.model_validate(gpu).model_dump() == gpu
        assert gpu["status"] == "unattested" and gpu["error"]["code"] == "gpu_cc_off"
        strict = served.verifier(policy="[gpu]\nrequired = true\n").appraise(doc, nonce=nonce)
        assert strict.status == "contraindicated" and "gpu_unattested" in _codes(strict)


# policy [gpu] -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "code"),
    [
        ("count = 2", "gpu_count_mismatch"),
        ('allowed_architectures = ["blackwell"]', "gpu_arch_not_allowed"),
        ('min_driver_version = "570.124.4"', "gpu_driver_version_rejected"),
        ('allowed_driver_versions = ["575.32"]', "gpu_driver_version_rejected"),
        ('min_vbios_version = "96.00.5E.00.05"', "gpu_vbios_version_rejected"),
        ('allowed_vbios_versions = ["96.00.9F.00.01"]', "gpu_vbios_version_rejected"),
        ('allowed_modes = ["multi", "ppcie"]', "gpu_mode_not_allowed"),
    ],
)
def test_gpu_policy_rejects_with_its_code(served: Served, policy: str, code: str) -> None:
    result = _attest(served, served.verifier(policy=f"[gpu]\n{policy}\n"))
    assert result.status == "contraindicated"
    assert code in _codes(result)
    [gpu] = result.claims["gpus"]
    if code != "gpu_count_mismatch":
        assert gpu["status"] == "rejected" and gpu["error"]["code"] == code


@pytest.mark.parametrize(
    "policy",
    [
        "count = 1",
        'allowed_architectures = ["hopper"]',
        'min_driver_version = "570.124.3"',
        'min_vbios_version = "96.00.5E.00.04"',
        'allowed_vbios_versions = ["96.00.5e.00.04"]',
        'allowed_modes = ["single"]',
        'ocsp = "off"',
        "require_measurements = false",
    ],
)
def test_gpu_policy_passes_at_its_boundary(served: Served, policy: str) -> None:
    result = _attest(served, served.verifier(policy=f"[gpu]\nrequired = true\n{policy}\n"))
    assert result.status == "warning", _codes(result)
    assert not [c for c in _codes(result) if c.startswith("gpu_")]


@pytest.mark.parametrize(
    "bad",
    [
        'min_driver_version = "5E.1"',
        'min_vbios_version = "96.zz"',
        "allowed_driver_versions = []",
        'allowed_architectures = ["ampere"]',
        'allowed_modes = ["passthrough"]',
        "count = 0",
        'ocsp = "maybe"',
        "unknown_key = 1",
    ],
)
def test_bad_gpu_policy_keys_fail_the_load(bad: str) -> None:
    from cllm.errors import PolicyError

    with pytest.raises(PolicyError):
        parse_policy(f"[gpu]\n{bad}\n", policy_id="bad")


# helpers ------------------------------------------------------------------------------------


def _rebound(served: Served, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """A document a lying (or buggy) server could produce: the ``gpu`` field changed *before*
    quoting, so digest and quote agree with it (the simulated TD quotes whatever it is given).
    Version 1 evidence: the GPU nonce is derived from the client's nonce itself."""
    from cllm.tee import SimulatedTdBackend, load_simulated_world

    nonce = os.urandom(32)
    honest = served.evidence(nonce)
    backend = SimulatedTdBackend(load_simulated_world(served.state, clock=time.time))
    keys = parse_evidence(honest).binding

    def collect(anchor: bytes, keys_digest: bytes) -> dict[str, Any]:
        [item] = served.gpu.collect(gpu_nonce(anchor=anchor, keys_digest=keys_digest))
        field = copy.deepcopy(honest["gpu"])
        field["reports"][0]["evidence"] = base64.b64encode(item.report).decode()
        change(field)
        return field

    evidence = build_evidence(
        backend,
        tee="simulated-tdx",
        binding=Binding(nonce, keys.signing_key, keys.hpke_key, keys.tls_spki_sha256),
        events=[],
        collateral=backend.world.collateral(),
        gpu=collect,
    )
    return {"document": evidence.to_json(), "nonce": nonce}
