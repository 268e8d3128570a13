"""What the server needs from its GPUs, whichever backend provides it (``nvml``, ``simulated``,
``none``): what is there, its confidential-computing state, and a signed report per GPU for a
nonce. Everything a backend cannot do raises ``GpuError`` with a stable code; a GPU whose
confidential computing is off or in DevTools mode is an error, never an empty pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Protocol

from cllm.gpu._roots import GpuTrustRoots
from cllm.gpu._sources import RimSource

__all__ = [
    "GPU_NONCE_SIZE",
    "GpuBackend",
    "GpuCcState",
    "GpuDevice",
    "GpuEvidence",
    "check_nonce",
]

GPU_NONCE_SIZE: Final = 32  # SPDM GET_MEASUREMENTS carries exactly 32 nonce bytes

MultiGpuMode = Literal["none", "protected-pcie", "nvle", "unknown"]


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One GPU as the driver describes it (not attested: the report says what is proven)."""

    index: int
    name: str
    uuid: str
    arch: str  # HOPPER, BLACKWELL, or the driver's number for others ("arch-8")
    vbios_version: str
    driver_version: str

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "arch": self.arch,
            "vbios_version": self.vbios_version,
            "driver_version": self.driver_version,
        }


@dataclass(frozen=True, slots=True)
class GpuCcState:
    """The system's confidential-computing state as the driver reports it."""

    cc_enabled: bool
    devtools: bool
    environment: Literal["prod", "sim", "unavailable", "unknown"]
    multi_gpu_mode: MultiGpuMode
    ready: bool | None  # the GPUs' "accepting client requests" state; None where unknown

    @property
    def attestable(self) -> bool:
        """Production CC on, DevTools off: the only state whose reports mean anything."""
        return self.cc_enabled and not self.devtools and self.environment == "prod"

    @property
    def mode(self) -> str:
        """One word for people and events: ``on``, ``off`` or ``devtools``."""
        if not self.cc_enabled:
            return "off"
        return "devtools" if self.devtools else "on"

    def to_dict(self) -> dict[str, object]:
        return {
            "cc_enabled": self.cc_enabled,
            "devtools": self.devtools,
            "environment": self.environment,
            "multi_gpu_mode": self.multi_gpu_mode,
            "ready": self.ready,
            "mode": self.mode,
            "attestable": self.attestable,
        }


@dataclass(frozen=True, slots=True)
class GpuEvidence:
    """One GPU's report (SPDM request || signed response) and device chain (PEM, leaf first)."""

    index: int
    report: bytes
    chain_pem: bytes


class GpuBackend(Protocol):
    """A source of GPU evidence. Wrong nonce sizes are caller bugs (``ValueError``)."""

    @property
    def name(self) -> str:
        """``"nvml"``, ``"simulated"`` or ``"none"``."""
        ...

    @property
    def simulated(self) -> bool:
        """True for evidence that is not from NVIDIA hardware."""
        ...

    def devices(self) -> tuple[GpuDevice, ...]:
        """The GPUs present (empty for ``none``)."""
        ...

    def cc_state(self) -> GpuCcState:
        """The confidential-computing state (``GpuError`` where the driver cannot say)."""
        ...

    def collect(self, nonce: bytes) -> tuple[GpuEvidence, ...]:
        """A report per GPU whose request nonce is ``nonce`` (32 bytes). ``gpu_cc_off``,
        ``gpu_devtools_mode``, ``gpu_unavailable`` or ``gpu_nvml_error`` otherwise."""
        ...

    def trust_roots(self) -> GpuTrustRoots:
        """The roots its evidence verifies under (NVIDIA's for hardware)."""
        ...

    def rims(self) -> RimSource | None:
        """Where its RIMs are when the backend itself has them (the simulated GPU), else None."""
        ...

    def ocsp_responses(self, at: int) -> tuple[bytes, ...]:
        """DER OCSP answers the backend staples (the simulated GPU's own responder)."""
        ...

    def set_ready(self) -> None:
        """Tell the driver the GPUs passed attestation (NVML's ready state); no-op elsewhere."""
        ...


def check_nonce(nonce: bytes) -> None:
    if len(nonce) != GPU_NONCE_SIZE:
        raise ValueError(f"GPU nonce must be {GPU_NONCE_SIZE} bytes, not {len(nonce)}")
