"""A stand-in for ``pynvml`` (nvidia-ml-py) at exactly the module boundary cllm's nvml backend
uses: the same function names, ``NVMLError`` with ``.value``, and output structures with the
same field names. Each test sets the machine's state: GPUs, CC mode, injected NVML errors, and
what the "GPU" signs for a nonce."""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_UNKNOWN = 999


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {999: "Unknown Error", 3: "Not Supported", 12: "NVML Shared Library Not Found"}.get(
            self.value, f"NVML error {self.value}"
        )


@dataclass
class FakeNvml:
    gpus: int = 1
    cc_feature: int = 0  # NVML_CC_SYSTEM_FEATURE_ENABLED = 1
    devtools: int = 0
    environment: int = 2  # PROD
    multi_gpu: int = 0
    ready: int = 0
    # function name -> NVML error code raised by that call
    errors: dict[str, int] = field(default_factory=dict)
    # (gpu index, nonce) -> (report, chain PEM)
    sign: Callable[[int, bytes], tuple[bytes, bytes]] | None = None
    report_size: Callable[[int], int] | None = None  # override the reported size (lies)
    calls: list[str] = field(default_factory=list)
    open_sessions: int = 0

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if name in self.errors:
            raise NVMLError(self.errors[name])

    def module(self) -> types.ModuleType:
        m = types.ModuleType("pynvml")
        fake = self
        m.NVMLError = NVMLError  # type: ignore[attr-defined]

        def init() -> None:
            fake._enter("nvmlInit")
            fake.open_sessions += 1

        def shutdown() -> None:
            fake._enter("nvmlShutdown")
            fake.open_sessions -= 1

        def count() -> int:
            fake._enter("nvmlDeviceGetCount")
            return fake.gpus

        def handle(i: int) -> int:
            fake._enter("nvmlDeviceGetHandleByIndex")
            return i

        def cc_state() -> Any:
            fake._enter("nvmlSystemGetConfComputeState")
            return types.SimpleNamespace(
                environment=fake.environment, ccFeature=fake.cc_feature, devToolsMode=fake.devtools
            )

        class Settings:
            multiGpuMode = 0  # noqa: N815  (NVML's field name)

        def settings(ref: Any) -> int:
            fake._enter("nvmlSystemGetConfComputeSettings")
            ref.multiGpuMode = fake.multi_gpu
            return 0

        def ready() -> int:
            fake._enter("nvmlSystemGetConfComputeGpusReadyState")
            return fake.ready

        def set_ready(state: int) -> int:
            fake._enter("nvmlSystemSetConfComputeGpusReadyState")
            fake.ready = state
            return 0

        def report(h: int, nonce: bytes) -> Any:
            fake._enter("nvmlDeviceGetConfComputeGpuAttestationReport")
            assert fake.sign is not None
            data, _ = fake.sign(h, bytes(nonce))
            size = fake.report_size(len(data)) if fake.report_size else len(data)
            return types.SimpleNamespace(
                attestationReport=data + bytes(8192 - len(data)), attestationReportSize=size
            )

        def cert(h: int) -> Any:
            fake._enter("nvmlDeviceGetConfComputeGpuCertificate")
            assert fake.sign is not None
            _, chain = fake.sign(h, bytes(32))
            return types.SimpleNamespace(
                attestationCertChain=chain + bytes(0x1400 * 2 - len(chain)),
                attestationCertChainSize=len(chain),
            )

        def text(name: str, value: str) -> Callable[..., str]:
            def get(*_: object) -> str:
                fake._enter(name)
                return value

            return get

        def arch(h: int) -> int:
            fake._enter("nvmlDeviceGetArchitecture")
            return 9  # NVML_DEVICE_ARCH_HOPPER

        functions: dict[str, object] = {
            "nvmlInit": init,
            "nvmlShutdown": shutdown,
            "nvmlDeviceGetCount": count,
            "nvmlDeviceGetHandleByIndex": handle,
            "nvmlSystemGetDriverVersion": text("nvmlSystemGetDriverVersion", "580.159.04"),
            "nvmlDeviceGetName": text("nvmlDeviceGetName", "NVIDIA H100 80GB HBM3"),
            "nvmlDeviceGetUUID": text("nvmlDeviceGetUUID", "GPU-0357db7d-e5a0-3ce9-5f71"),
            "nvmlDeviceGetVbiosVersion": text("nvmlDeviceGetVbiosVersion", "96.00.99.00.0D"),
            "nvmlDeviceGetArchitecture": arch,
            "nvmlSystemGetConfComputeState": cc_state,
            "c_nvmlSystemConfComputeSettings_v1_t": Settings,
            "byref": lambda obj: obj,
            "nvmlSystemGetConfComputeSettings": settings,
            "nvmlSystemGetConfComputeGpusReadyState": ready,
            "nvmlSystemSetConfComputeGpusReadyState": set_ready,
            "nvmlDeviceGetConfComputeGpuAttestationReport": report,
            "nvmlDeviceGetConfComputeGpuCertificate": cert,
        }
        for name, fn in functions.items():
            setattr(m, name, fn)
        return m
