"""GPU backends: ``nvml`` against a fake ``pynvml`` (CC off, DevTools, NVML errors such as the
999 a CC-off H100 answers, no GPU, lying sizes), the simulated GPU end to end (verifies only
under its own, explicitly trusted roots, never as NVIDIA hardware), ``none`` and ``auto``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from gpu_pki import pki

from cllm.errors import GpuError
from cllm.gpu import (
    NO_RIMS,
    GpuBackendChoice,
    GpuBundleVerification,
    GpuTrustRoots,
    GpuVerifier,
    NoGpuBackend,
    OcspMode,
    OcspPolicy,
    RimKind,
    SelectedGpuBackend,
    load_simulated_gpu,
    nvidia_roots,
    select_gpu_backend,
    simulated_roots_from_pem,
    verify_bundle,
)
from cllm.gpu._nvml import NvmlBackend, load_pynvml
from fake_pynvml import NVML_ERROR_NOT_SUPPORTED, FakeNvml

NONCE = bytes(range(32))


def _cc_on(**kw: object) -> FakeNvml:
    fake = FakeNvml(cc_feature=1, **kw)  # type: ignore[arg-type]  # test-only keywords
    fake.sign = lambda i, nonce: (pki().report(nonce=nonce), pki().chain_pem)
    return fake


def _select(fake: FakeNvml | None, choice: GpuBackendChoice = "auto") -> SelectedGpuBackend:
    module = fake.module() if fake else None
    return select_gpu_backend(
        choice, state_dir=Path("/nonexistent"), clock=time.time, nvml_loader=lambda: module
    )


# nvml ------------------------------------------------------------------------------------


def test_cc_off_is_reported_truthfully_and_refuses_evidence() -> None:
    fake = FakeNvml(cc_feature=0, environment=0)
    backend = NvmlBackend(fake.module())
    [gpu] = backend.devices()
    assert (gpu.arch, gpu.name, gpu.vbios_version) == (
        "HOPPER",
        "NVIDIA H100 80GB HBM3",
        "96.00.99.00.0D",
    )
    state = backend.cc_state()
    assert (state.mode, state.attestable, state.environment) == ("off", False, "unavailable")
    with pytest.raises(GpuError) as caught:
        backend.collect(NONCE)
    assert caught.value.code == "gpu_cc_off"
    # CC state is checked before any report is asked for, and every session is closed.
    assert "nvmlDeviceGetConfComputeGpuAttestationReport" not in fake.calls
    assert fake.open_sessions == 0


def test_devtools_mode_is_never_evidence() -> None:
    fake = _cc_on(devtools=1)
    backend = NvmlBackend(fake.module())
    assert backend.cc_state().mode == "devtools"
    with pytest.raises(GpuError) as caught:
        backend.collect(NONCE)
    assert caught.value.code == "gpu_devtools_mode"
    assert "nvmlDeviceGetConfComputeGpuAttestationReport" not in fake.calls


def test_simulated_cc_environment_is_not_prod() -> None:
    with pytest.raises(GpuError) as caught:
        NvmlBackend(_cc_on(environment=1).module()).collect(NONCE)
    assert caught.value.code == "gpu_cc_off"


def test_nvml_999_on_the_attestation_call_is_a_typed_error() -> None:
    fake = _cc_on(errors={"nvmlDeviceGetConfComputeGpuAttestationReport": 999})
    with pytest.raises(GpuError) as caught:
        NvmlBackend(fake.module()).collect(NONCE)
    assert caught.value.code == "gpu_nvml_error"
    assert "999" in caught.value.message
    assert fake.open_sessions == 0


def test_cc_state_not_supported_means_cc_off() -> None:
    fake = _cc_on(errors={"nvmlSystemGetConfComputeState": NVML_ERROR_NOT_SUPPORTED})
    backend = NvmlBackend(fake.module())
    assert backend.cc_state().mode == "off"
    with pytest.raises(GpuError) as caught:
        backend.collect(NONCE)
    assert caught.value.code == "gpu_cc_off"


@pytest.mark.parametrize("size", [0, -1, 10**6])
def test_report_size_nvml_cannot_hold_is_refused(size: int) -> None:
    fake = _cc_on()
    fake.report_size = lambda _: size
    with pytest.raises(GpuError) as caught:
        NvmlBackend(fake.module()).collect(NONCE)
    assert caught.value.code == "gpu_nvml_error"


def test_collect_returns_exactly_what_the_gpu_signed_for_our_nonce() -> None:
    fake = _cc_on(gpus=2)
    evidence = NvmlBackend(fake.module()).collect(NONCE)
    assert [e.index for e in evidence] == [0, 1]
    assert evidence[0].chain_pem == pki().chain_pem
    assert evidence[0].report[4:36] == NONCE  # the request nonce, as NVML passed it on
    with pytest.raises(ValueError, match="32 bytes"):
        NvmlBackend(fake.module()).collect(bytes(31))


def test_non_nvidia_evidence_from_nvml_fails_under_nvidia_roots() -> None:
    """A driver (or anyone between it and us) answering with evidence signed under another
    root: the nvml backend trusts NVIDIA's roots only."""
    backend = NvmlBackend(_cc_on().module())
    assert backend.trust_roots().is_nvidia
    [item] = backend.collect(NONCE)
    result = GpuVerifier(roots=backend.trust_roots()).verify(
        item.report,
        chain=item.chain_pem,
        expected_nonce=NONCE,
        rims=NO_RIMS,
        rims_required=(),
        ocsp=OcspPolicy(OcspMode.OFF),
        at=int(time.time()),
    )
    assert result.error is not None and result.error.code == "gpu_chain_untrusted"


# selection ---------------------------------------------------------------------------------


def test_auto_takes_nvml_when_gpus_are_visible() -> None:
    selected = _select(FakeNvml(gpus=1))
    assert selected.backend.name == "nvml" and "1 GPU" in selected.reason


@pytest.mark.parametrize(
    ("fake", "why"),
    [
        (None, "nvidia-ml-py not installed"),
        (FakeNvml(errors={"nvmlInit": 12}), "Not Found"),
        (FakeNvml(errors={"nvmlInit": 9}), "NVML 9"),
        (FakeNvml(gpus=0), "no GPU"),
    ],
)
def test_auto_is_none_without_library_driver_or_gpu(fake: FakeNvml | None, why: str) -> None:
    selected = _select(fake)
    assert selected.backend.name == "none"
    assert why in selected.reason
    with pytest.raises(GpuError) as caught:
        _select(fake, "nvml")
    assert caught.value.code == "gpu_unavailable"


def test_a_broken_driver_is_not_no_gpu() -> None:
    """NVML failing with 999 at init: auto must not quietly decide there is no GPU."""
    with pytest.raises(GpuError) as caught:
        _select(FakeNvml(errors={"nvmlInit": 999}))
    assert caught.value.code == "gpu_nvml_error"


def test_missing_pynvml_is_gpu_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    with pytest.raises(GpuError) as caught:
        load_pynvml()
    assert caught.value.code == "gpu_unavailable"


def test_none_backend_has_nothing_to_attest() -> None:
    backend = NoGpuBackend()
    assert backend.devices() == () and backend.cc_state().mode == "off"
    with pytest.raises(GpuError) as caught:
        backend.collect(NONCE)
    assert caught.value.code == "gpu_unavailable"


# simulated -----------------------------------------------------------------------------------


def _verify_simulated(
    tmp_path: Path, *, roots: GpuTrustRoots, nonce: bytes = NONCE
) -> GpuBundleVerification:
    gpu = load_simulated_gpu(tmp_path, clock=time.time)
    evidence = gpu.collect(nonce)
    at = int(time.time())
    rims = gpu.rims()
    assert rims is not None
    return verify_bundle(
        GpuVerifier(roots=roots),
        [(e.report, e.chain_pem) for e in evidence],
        expected_nonce=NONCE,
        rims=rims,
        rims_required=(RimKind.DRIVER, RimKind.VBIOS),
        ocsp=OcspPolicy(OcspMode.REQUIRE, responses=gpu.ocsp_responses(at)),
        at=at,
    )


def test_simulated_gpu_verifies_only_under_its_trusted_root(tmp_path: Path) -> None:
    gpu = load_simulated_gpu(tmp_path, clock=time.time)
    result = _verify_simulated(tmp_path, roots=gpu.trust_roots())
    assert result.ok, result.error
    [claims] = [r.claims for r in result.results]
    assert claims is not None
    assert claims.nvidia_hardware is False and claims.roots == "cllm simulated GPU"
    assert claims.measurements is not None and claims.measurements.matched
    assert claims.ocsp == "good"
    # The same evidence under NVIDIA's roots: never NVIDIA hardware.
    rejected = _verify_simulated(tmp_path, roots=nvidia_roots())
    assert not rejected.ok
    assert rejected.results[0].error is not None
    assert rejected.results[0].error.code == "gpu_chain_untrusted"


def test_simulated_root_pem_round_trip_and_persistence(tmp_path: Path) -> None:
    first = load_simulated_gpu(tmp_path, clock=time.time)
    again = load_simulated_gpu(tmp_path, clock=time.time)
    assert first.root_pems() == again.root_pems()  # kept in the state directory
    assert (tmp_path / "simulated-gpu.json").stat().st_mode & 0o777 == 0o600
    roots = simulated_roots_from_pem(b"".join(first.root_pems()))
    assert not roots.is_nvidia
    assert _verify_simulated(tmp_path, roots=roots).ok
    # Another machine's simulated GPU is not this one.
    other = load_simulated_gpu(tmp_path / "other", clock=time.time)
    result = _verify_simulated(tmp_path, roots=other.trust_roots())
    assert result.results[0].error is not None
    assert result.results[0].error.code == "gpu_chain_untrusted"


def test_simulated_report_for_another_nonce_is_rejected(tmp_path: Path) -> None:
    gpu = load_simulated_gpu(tmp_path, clock=time.time)
    result = _verify_simulated(tmp_path, roots=gpu.trust_roots(), nonce=os.urandom(32))
    assert result.results[0].error is not None
    assert result.results[0].error.code == "gpu_nonce_mismatch"


def test_simulated_root_file_must_hold_two_certificates(tmp_path: Path) -> None:
    gpu = load_simulated_gpu(tmp_path, clock=time.time)
    device, rim = gpu.root_pems()
    for pem in (device, device + rim + device, b"not a PEM"):
        with pytest.raises(GpuError) as caught:
            simulated_roots_from_pem(pem)
        assert caught.value.code == "gpu_simulated_state"


def test_corrupt_simulated_state_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "simulated-gpu.json").write_bytes(b"{not json")
    with pytest.raises(GpuError) as caught:
        load_simulated_gpu(tmp_path, clock=time.time)
    assert caught.value.code == "gpu_simulated_state"
