"""Choosing the GPU backend: ``nvml`` where NVML sees NVIDIA GPUs, else ``none`` (``auto``);
or exactly the one asked for."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

from cllm.errors import GpuError
from cllm.gpu._backend import GpuBackend, GpuCcState, GpuDevice, GpuEvidence, check_nonce
from cllm.gpu._nvml import NvmlBackend, load_pynvml, nvml_probe
from cllm.gpu._roots import GpuTrustRoots, nvidia_roots
from cllm.gpu._simulated import load_simulated_gpu
from cllm.gpu._sources import RimSource

__all__ = ["GpuBackendChoice", "NoGpuBackend", "SelectedGpuBackend", "select_gpu_backend"]

_log = logging.getLogger(__name__)

GpuBackendChoice = Literal["auto", "nvml", "simulated", "none"]


class NoGpuBackend:
    """No GPU: nothing to report, and asking for evidence is ``gpu_unavailable``."""

    @property
    def name(self) -> str:
        return "none"

    @property
    def simulated(self) -> bool:
        return False

    def devices(self) -> tuple[GpuDevice, ...]:
        return ()

    def cc_state(self) -> GpuCcState:
        return GpuCcState(
            cc_enabled=False,
            devtools=False,
            environment="unavailable",
            multi_gpu_mode="unknown",
            ready=None,
        )

    def collect(self, nonce: bytes) -> tuple[GpuEvidence, ...]:
        check_nonce(nonce)
        raise GpuError("no GPU backend: there is no GPU to attest", code="gpu_unavailable")

    def trust_roots(self) -> GpuTrustRoots:
        return nvidia_roots()

    def rims(self) -> RimSource | None:
        return None

    def ocsp_responses(self, at: int) -> tuple[bytes, ...]:
        return ()

    def set_ready(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class SelectedGpuBackend:
    backend: GpuBackend
    reason: str


def _try_pynvml() -> ModuleType | None:
    try:
        return load_pynvml()
    except GpuError:
        return None


def select_gpu_backend(
    choice: GpuBackendChoice,
    *,
    state_dir: Path,
    clock: Callable[[], float],
    nvml_loader: Callable[[], ModuleType | None] = _try_pynvml,
) -> SelectedGpuBackend:
    """``auto``: ``nvml`` when NVML sees at least one GPU, ``none`` when there is no NVML
    library, driver or GPU (a driver that fails otherwise is an error, not "no GPU");
    ``nvml``: ``gpu_unavailable`` unless NVML sees a GPU; ``simulated``: the state directory's
    simulated GPU; ``none``: no GPU."""
    if choice == "simulated":
        backend = load_simulated_gpu(state_dir, clock=clock)
        _log.warning(
            "GPU backend: SIMULATED GPU (%s); its evidence is not NVIDIA hardware", backend.path
        )
        return SelectedGpuBackend(backend, "simulated GPU requested")
    if choice == "none":
        return SelectedGpuBackend(NoGpuBackend(), "no GPU backend requested")
    nvml = nvml_loader()
    count, why = nvml_probe(nvml)
    if count and nvml is not None:
        return SelectedGpuBackend(NvmlBackend(nvml), why)
    if choice == "nvml":
        raise GpuError(f"nvml GPU backend requested but unavailable: {why}", code="gpu_unavailable")
    return SelectedGpuBackend(NoGpuBackend(), f"no NVIDIA GPU visible ({why})")
