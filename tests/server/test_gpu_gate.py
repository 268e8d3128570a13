"""The GPU boot gate of ``cllm serve``: the mode it decides, the codes it refuses with, and the
``cllm.gpu`` event it extends into RTMR3, including what an attacker controlling the GPU side
(replayed reports, another GPU's evidence, one GPU shown twice, foreign roots) gets: a refusal."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cllm._internal.jcs import canonical_json
from cllm.errors import GpuError
from cllm.evidence import check_evidence, parse_evidence
from cllm.gpu import (
    GpuEvidence,
    GpuTrustRoots,
    NoGpuBackend,
    SelectedGpuBackend,
    SimulatedGpuBackend,
    driver_rim_id,
    load_simulated_gpu,
    parse_report,
    vbios_rim_id,
)
from cllm.gpu._chain import GpuArch
from cllm.gpu._nvml import NvmlBackend
from cllm.measure import replay
from cllm.server import ServeSettings, build_runtime, create_app
from cllm.server._gpu import GpuGate, evidence_digest, gpu_boot_gate
from fake_pynvml import FakeNvml

NONCE = bytes(range(32, 64))


def _settings(tmp: Path, **kw: object) -> ServeSettings:
    return ServeSettings(state_dir=tmp / "state", tee="simulated", **kw)  # type: ignore[arg-type]


def _gate(
    tmp: Path, backend: object, clock: Callable[[], float] = time.time, **kw: object
) -> tuple[ServeSettings, GpuGate]:
    selected = SelectedGpuBackend(backend, "injected")  # type: ignore[arg-type]
    settings = _settings(tmp, **kw)
    return gpu_boot_gate(settings, clock=clock, selected=selected, nonce=lambda: NONCE)


def _code(tmp: Path, backend: object, clock: Callable[[], float] = time.time, **kw: object) -> str:
    with pytest.raises(GpuError) as caught:
        _gate(tmp, backend, clock, **kw)
    return caught.value.code


# modes and refusals ------------------------------------------------------------------------


def test_no_gpu_defaults_to_off_without_an_event(tmp_path: Path) -> None:
    settings, gate = _gate(tmp_path, NoGpuBackend())
    assert (settings.gpu, gate.status, gate.event) == ("off", "off", None)


def test_required_without_gpu_is_gpu_unavailable(tmp_path: Path) -> None:
    assert _code(tmp_path, NoGpuBackend(), gpu="required") == "gpu_unavailable"


def test_optional_without_gpu_says_absent(tmp_path: Path) -> None:
    _, gate = _gate(tmp_path, NoGpuBackend(), gpu="optional")
    assert gate.event is not None
    details = gate.event.details
    assert (details["status"], details["attested"], details["reason"]) == (
        "absent",
        False,
        "gpu_unavailable",
    )


def test_cc_off_gpu_required_by_default(tmp_path: Path) -> None:
    """GPUs present and no --gpu: required, so a CC-off GPU stops the server."""
    backend = NvmlBackend(FakeNvml(cc_feature=0, environment=0).module())
    assert _code(tmp_path, backend) == "gpu_cc_off"
    assert _code(tmp_path, backend, gpu="required") == "gpu_cc_off"


def test_cc_off_gpu_optional_starts_unattested(tmp_path: Path) -> None:
    backend = NvmlBackend(FakeNvml(cc_feature=0, environment=0).module())
    settings, gate = _gate(tmp_path, backend, gpu="optional")
    assert settings.gpu == "optional" and gate.status == "unattested"
    assert gate.event is not None and gate.event.type == "cllm.gpu"
    d = gate.event.details
    assert (d["backend"], d["count"], d["cc"], d["attested"], d["reason"]) == (
        "nvml",
        1,
        "off",
        False,
        "gpu_cc_off",
    )
    assert d["present"][0]["arch"] == "HOPPER"  # type: ignore[index]
    assert "gpus" not in d and "evidence_sha384" not in d  # nothing claimed as attested


def test_devtools_optional_names_the_reason(tmp_path: Path) -> None:
    backend = NvmlBackend(FakeNvml(cc_feature=1, devtools=1).module())
    assert _code(tmp_path, backend, gpu="required") == "gpu_devtools_mode"
    _, gate = _gate(tmp_path, backend, gpu="optional")
    assert gate.event is not None and gate.event.details["reason"] == "gpu_devtools_mode"


def test_nvml_error_is_its_own_code(tmp_path: Path) -> None:
    fake = FakeNvml(cc_feature=1, errors={"nvmlDeviceGetConfComputeGpuAttestationReport": 999})
    assert _code(tmp_path, NvmlBackend(fake.module()), gpu="required") == "gpu_nvml_error"


def test_off_skips_the_gpus(tmp_path: Path) -> None:
    fake = FakeNvml(cc_feature=0)
    settings, gate = _gate(tmp_path, NvmlBackend(fake.module()), gpu="off")
    assert gate.event is None and settings.gpu == "off"
    assert "nvmlSystemGetConfComputeState" not in fake.calls


# the simulated GPU and the event -----------------------------------------------------------


@dataclass
class Recording:
    """The simulated GPU, remembering what it handed out."""

    inner: SimulatedGpuBackend
    seen: list[tuple[GpuEvidence, ...]]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def collect(self, nonce: bytes) -> tuple[GpuEvidence, ...]:
        evidence = self.inner.collect(nonce)
        self.seen.append(evidence)
        return evidence


def test_simulated_gpu_attested_event(tmp_path: Path) -> None:
    gpu = Recording(load_simulated_gpu(tmp_path / "state", clock=time.time), [])
    settings, gate = _gate(tmp_path, gpu)
    assert settings.gpu == "required" and gate.status == "attested"
    assert gate.event is not None
    event = gate.event
    d = event.details
    assert d["count"] == 1 and d["simulated"] is True and d["backend"] == "simulated"
    [entry] = d["gpus"]  # type: ignore[misc]
    assert entry["nvidia_hardware"] is False
    assert entry["measurements"] == "matched" and entry["ocsp"] == "good"
    assert d["arch"] == "HOPPER" and d["mode"] == "SPT"
    assert d["driver_versions"] == ("570.124.03",)
    assert d["vbios_versions"] == ("96.00.5E.00.04",)
    assert d["ueids"] == (entry["ueid"],)
    # The evidence digest is of exactly the reports and chains the gate verified.
    assert d["evidence_sha384"] == evidence_digest(gpu.seen[0]).hex()
    assert gpu.seen[0][0].report[4:36] == NONCE
    policy = d["policy"]
    assert d["policy_sha384"] == hashlib.sha384(canonical_json(_thaw(policy))).hexdigest()
    assert policy["roots"] == "cllm simulated GPU" and policy["nvidia_roots"] is False  # type: ignore[index]
    assert policy["ocsp"] == "require"  # type: ignore[index]
    # The event's digest commits to its details.
    assert event.digest == hashlib.sha384(canonical_json(_thaw(d))).digest()


def _thaw(value: object) -> object:
    from cllm.measure._event import thaw_json

    return thaw_json(value)  # type: ignore[arg-type]


class Replaying:
    """A GPU side that answers with a report made for another nonce (replay)."""

    def __init__(self, inner: SimulatedGpuBackend, mutate: str) -> None:
        self.inner, self.mutate = inner, mutate

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def collect(self, nonce: bytes) -> tuple[GpuEvidence, ...]:
        if self.mutate == "replay":
            return self.inner.collect(os.urandom(32))
        if self.mutate == "twice":
            [one] = self.inner.collect(nonce)
            return (one, GpuEvidence(1, one.report, one.chain_pem))
        if self.mutate == "empty":
            return ()
        raise AssertionError(self.mutate)


@pytest.mark.parametrize(
    ("mutate", "inner_code"),
    [
        ("replay", "gpu_nonce_mismatch"),
        ("twice", "gpu_bundle_duplicate_device"),
        ("empty", "gpu_bundle_empty"),
    ],
)
def test_attacks_on_the_gpu_side_are_refused(tmp_path: Path, mutate: str, inner_code: str) -> None:
    gpu = Replaying(load_simulated_gpu(tmp_path / "state", clock=time.time), mutate)
    with pytest.raises(GpuError) as caught:
        _gate(tmp_path, gpu)
    assert caught.value.code == "gpu_evidence_rejected"
    assert inner_code in caught.value.message


def test_another_simulated_gpu_under_this_root_is_refused(tmp_path: Path) -> None:
    """Evidence of a GPU whose root is not the one the gate trusts."""
    ours = load_simulated_gpu(tmp_path / "ours", clock=time.time)
    theirs = load_simulated_gpu(tmp_path / "theirs", clock=time.time)

    class Foreign:
        def __getattr__(self, name: str) -> object:
            return getattr(theirs, name)

        def trust_roots(self) -> GpuTrustRoots:
            return ours.trust_roots()

    with pytest.raises(GpuError) as caught:
        _gate(tmp_path, Foreign())
    assert caught.value.code == "gpu_evidence_rejected"
    assert "gpu_chain_untrusted" in caught.value.message


def test_nvml_evidence_passes_only_under_injected_roots_and_sets_ready(tmp_path: Path) -> None:
    """Through the nvml backend end to end (fake pynvml, test PKI, RIM directory, OCSP off):
    verified, the GPUs' ready state is set, and nvidia_hardware stays false."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gpu"))
    from gpu_pki import DRIVER, NOW, pki

    fake = FakeNvml(cc_feature=1)
    fake.sign = lambda i, nonce: (pki().report(nonce=nonce), pki().chain_pem)
    report = parse_report(pki().report())
    rims = tmp_path / "rims"
    rims.mkdir()
    driver_id = driver_rim_id(report, GpuArch.HOPPER)
    vbios_id = vbios_rim_id(report)
    assert driver_id and vbios_id
    (rims / driver_id).write_bytes(pki().rim(DRIVER, range(0, 32)))
    (rims / vbios_id).write_bytes(pki().rim("96.00.5E.00.04", range(32, 64)))

    class Injected(NvmlBackend):
        def trust_roots(self) -> GpuTrustRoots:
            return pki().roots

    backend = Injected(fake.module())
    # Under NVIDIA's roots (the real nvml backend), this evidence is refused.
    at = lambda: float(NOW)  # noqa: E731  (the test PKI's time)
    code = _code(tmp_path, NvmlBackend(fake.module()), at, gpu_rim_dir=rims, gpu_ocsp="off")
    assert code == "gpu_evidence_rejected"
    assert fake.ready == 0
    _, gate = _gate(tmp_path, backend, at, gpu_rim_dir=rims, gpu_ocsp="off")
    assert gate.status == "attested" and fake.ready == 1
    assert gate.event is not None
    assert gate.event.details["gpus"][0]["nvidia_hardware"] is False  # type: ignore[index]
    assert gate.event.details["policy"]["rims"] == f"directory:{rims}"  # type: ignore[index]


# through build_runtime and the CLI ---------------------------------------------------------


def test_gpu_event_is_in_rtmr3_and_the_evidence(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    engine = tmp_path / "engine.bin"
    engine.write_bytes(b"upstream engine")
    settings = _settings(
        tmp_path,
        engine="openai",
        upstream="http://127.0.0.1:9",
        model="m",
        measure=(engine,),
        gpu_backend="simulated",
    )
    runtime, report = build_runtime(settings, argv=["cllm", "serve"], clock=time.time)
    assert report.gpu == "attested"
    types = [e.type for e in report.events]
    assert types[-1] == "cllm.gpu"
    assert replay(report.events)[3] == report.rtmr3
    config = next(e for e in report.events if e.type == "cllm.config")
    assert config.details["settings"]["gpu"] == "required"  # type: ignore[index]
    assert config.details["settings"]["gpu_backend"] == "simulated"  # type: ignore[index]
    with TestClient(create_app(runtime)) as client:
        nonce = os.urandom(32)
        document = client.get("/v1/attestation/report", params={"nonce": nonce.hex()})
        evidence = parse_evidence(document.content)
        check = check_evidence(evidence, expected_nonce=nonce)
        assert check.ok
        assert [e.type for e in check.events][-1] == "cllm.gpu"


def _serve(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    engine = tmp / "engine.bin"
    engine.write_bytes(b"upstream engine")
    env = {**os.environ, "CLLM_STATE_DIR": str(tmp / "state")}
    env.pop("CLLM_GPU_BACKEND", None)
    argv = ["serve", "--engine", "openai", "--upstream", "http://127.0.0.1:9", "--model", "m"]
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cllm.cli import main; sys.exit(main())",
            *argv,
            "--measure",
            str(engine),
            "--tee",
            "simulated",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_gpu_required_without_gpu_refuses(tmp_path: Path) -> None:
    done = _serve("--gpu", "required", "--gpu-backend", "none", tmp=tmp_path)
    assert done.returncode == 2
    assert "gpu_unavailable" in done.stdout + done.stderr
    assert "serving on" not in done.stdout


def test_cli_gpu_backend_from_environment_is_validated(tmp_path: Path) -> None:
    engine = tmp_path / "engine.bin"
    engine.write_bytes(b"x")
    env = {**os.environ, "CLLM_GPU_BACKEND": "bogus", "CLLM_STATE_DIR": str(tmp_path)}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cllm.cli import main; sys.exit(main())",
            "serve",
            "--engine",
            "openai",
            "--upstream",
            "http://127.0.0.1:9",
            "--model",
            "m",
            "--measure",
            str(engine),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "[config_invalid] --gpu-backend" in done.stdout + done.stderr
