"""The ``nvml`` GPU backend: NVIDIA's management library through ``nvidia-ml-py`` (``pynvml``).

``pynvml`` is imported lazily (it is in the ``[server]`` extra) and passed in as a module, so
tests replace it at exactly this boundary. Every NVML failure becomes a ``GpuError``:
``gpu_unavailable`` where there is no NVML library, driver or GPU, ``gpu_nvml_error`` (with the
NVML return code in the message, e.g. 999 for the "Unknown Error" an H100 answers attestation
calls with while CC is off) for the rest. Before any report is asked for, the CC state is read:
CC off gives ``gpu_cc_off``, DevTools mode ``gpu_devtools_mode``, so a report from a GPU whose
protections are down never looks like evidence.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Final, TypeVar

from cllm.errors import GpuError
from cllm.gpu._backend import GpuCcState, GpuDevice, GpuEvidence, MultiGpuMode, check_nonce
from cllm.gpu._roots import GpuTrustRoots, nvidia_roots
from cllm.gpu._sources import RimSource

__all__ = ["NvmlBackend", "load_pynvml", "nvml_probe"]

_log = logging.getLogger(__name__)

# NVML return codes with a meaning of their own here (nvml.h).
_NOT_SUPPORTED: Final = 3
_DRIVER_NOT_LOADED: Final = 9
_LIBRARY_NOT_FOUND: Final = 12
_FUNCTION_NOT_FOUND: Final = 13
_ABSENT: Final = frozenset({_DRIVER_NOT_LOADED, _LIBRARY_NOT_FOUND})
_ARCH_NAMES: Final = {9: "HOPPER", 10: "BLACKWELL"}
_MULTI_GPU: Final[dict[int, MultiGpuMode]] = {0: "none", 1: "protected-pcie", 2: "nvle"}
_ENVIRONMENT: Final = {0: "unavailable", 1: "sim", 2: "prod"}
_MAX_CHAIN: Final = 64 * 1024
_T = TypeVar("_T")


def load_pynvml() -> ModuleType:
    """``pynvml`` from ``nvidia-ml-py``; ``gpu_unavailable`` when it is not installed."""
    try:
        return importlib.import_module("pynvml")
    except ImportError as exc:
        raise GpuError(
            "the nvml GPU backend needs nvidia-ml-py (pip install 'confidential-llm[server]')",
            code="gpu_unavailable",
        ) from exc


def _code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").rstrip("\0")
    return str(value)


class NvmlBackend:
    """Real GPUs through NVML. One ``nvmlInit``/``nvmlShutdown`` pair per call."""

    def __init__(self, nvml: ModuleType) -> None:
        self._nvml = nvml

    @property
    def name(self) -> str:
        return "nvml"

    @property
    def simulated(self) -> bool:
        return False

    # NVML calls ------------------------------------------------------------------------

    def _error(self, exc: BaseException, what: str) -> GpuError:
        code = _code(exc)
        if code in _ABSENT:
            return GpuError(f"NVML {what}: {exc} (NVML {code})", code="gpu_unavailable")
        return GpuError(f"NVML {what} failed: {exc} (NVML error {code})", code="gpu_nvml_error")

    def _call(self, what: str, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(*args)
        except self._nvml.NVMLError as exc:
            raise self._error(exc, what) from exc

    @contextmanager
    def _session(self) -> Iterator[None]:
        self._call("nvmlInit", self._nvml.nvmlInit)
        try:
            yield
        finally:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError as exc:  # nothing to undo; say so and go on
                _log.warning("nvmlShutdown failed: %s", exc)

    def _handles(self) -> list[Any]:
        count = self._call("nvmlDeviceGetCount", self._nvml.nvmlDeviceGetCount)
        get = self._nvml.nvmlDeviceGetHandleByIndex
        return [self._call(f"nvmlDeviceGetHandleByIndex({i})", get, i) for i in range(count)]

    # GpuBackend --------------------------------------------------------------------------

    def devices(self) -> tuple[GpuDevice, ...]:
        nvml = self._nvml
        with self._session():
            driver = _text(
                self._call("nvmlSystemGetDriverVersion", nvml.nvmlSystemGetDriverVersion)
            )
            found = []
            for index, handle in enumerate(self._handles()):
                arch = self._call(
                    "nvmlDeviceGetArchitecture", nvml.nvmlDeviceGetArchitecture, handle
                )
                found.append(
                    GpuDevice(
                        index=index,
                        name=_text(self._call("nvmlDeviceGetName", nvml.nvmlDeviceGetName, handle)),
                        uuid=_text(self._call("nvmlDeviceGetUUID", nvml.nvmlDeviceGetUUID, handle)),
                        arch=_ARCH_NAMES.get(int(arch), f"arch-{int(arch)}"),
                        vbios_version=_text(
                            self._call(
                                "nvmlDeviceGetVbiosVersion", nvml.nvmlDeviceGetVbiosVersion, handle
                            )
                        ),
                        driver_version=driver,
                    )
                )
        return tuple(found)

    def _cc_state(self) -> GpuCcState:
        nvml = self._nvml
        try:
            state = nvml.nvmlSystemGetConfComputeState()
        except nvml.NVMLError as exc:
            if _code(exc) in (_NOT_SUPPORTED, _FUNCTION_NOT_FOUND):
                # A driver or GPU without confidential computing: CC is off, truthfully.
                return GpuCcState(
                    cc_enabled=False,
                    devtools=False,
                    environment="unavailable",
                    multi_gpu_mode="unknown",
                    ready=None,
                )
            raise self._error(exc, "nvmlSystemGetConfComputeState") from exc
        multi: MultiGpuMode = "unknown"
        try:
            settings = nvml.c_nvmlSystemConfComputeSettings_v1_t()
            ret = nvml.nvmlSystemGetConfComputeSettings(nvml.byref(settings))
            if ret == 0:
                multi = _MULTI_GPU.get(int(settings.multiGpuMode), "unknown")
        except (nvml.NVMLError, AttributeError, TypeError) as exc:  # older drivers lack it
            _log.info("nvmlSystemGetConfComputeSettings unavailable: %s", exc)
        ready: bool | None = None
        try:
            ready = bool(nvml.nvmlSystemGetConfComputeGpusReadyState())
        except nvml.NVMLError as exc:
            _log.info("nvmlSystemGetConfComputeGpusReadyState unavailable: %s", exc)
        return GpuCcState(
            cc_enabled=int(state.ccFeature) == 1,  # NVML_CC_SYSTEM_FEATURE_ENABLED
            devtools=int(state.devToolsMode) == 1,  # NVML_CC_SYSTEM_DEVTOOLS_MODE_ON
            environment=_ENVIRONMENT.get(int(state.environment), "unknown"),  # type: ignore[arg-type]
            multi_gpu_mode=multi,
            ready=ready,
        )

    def cc_state(self) -> GpuCcState:
        with self._session():
            return self._cc_state()

    def collect(self, nonce: bytes) -> tuple[GpuEvidence, ...]:
        check_nonce(nonce)
        nvml = self._nvml
        with self._session():
            handles = self._handles()
            if not handles:
                raise GpuError("NVML sees no GPU", code="gpu_unavailable")
            state = self._cc_state()
            if not state.cc_enabled:
                raise GpuError(
                    f"{len(handles)} GPU(s) present but confidential computing is off",
                    code="gpu_cc_off",
                )
            if state.devtools:
                raise GpuError(
                    "confidential computing is in DevTools mode: the GPU's protections are "
                    "relaxed for debugging and its reports prove nothing",
                    code="gpu_devtools_mode",
                )
            if state.environment != "prod":
                raise GpuError(
                    f"confidential computing environment is {state.environment!r}, not prod",
                    code="gpu_cc_off",
                )

            def one(index: int, handle: Any) -> GpuEvidence:
                report = self._call(
                    f"nvmlDeviceGetConfComputeGpuAttestationReport (GPU {index})",
                    nvml.nvmlDeviceGetConfComputeGpuAttestationReport,
                    handle,
                    nonce,
                )
                cert = self._call(
                    f"nvmlDeviceGetConfComputeGpuCertificate (GPU {index})",
                    nvml.nvmlDeviceGetConfComputeGpuCertificate,
                    handle,
                )
                return GpuEvidence(
                    index=index,
                    report=_sized(report.attestationReport, report.attestationReportSize, "report"),
                    chain_pem=_sized(
                        cert.attestationCertChain, cert.attestationCertChainSize, "chain"
                    ),
                )

            # Each GPU answers its SPDM request on its own (about 0.1 s on an H100; NVML
            # releases the GIL in the driver call): all at once, so eight GPUs cost one.
            if len(handles) == 1:
                evidence = [one(0, handles[0])]
            else:
                with ThreadPoolExecutor(max_workers=min(len(handles), 16)) as pool:
                    evidence = list(pool.map(one, range(len(handles)), handles))
        return tuple(evidence)

    def trust_roots(self) -> GpuTrustRoots:
        return nvidia_roots()

    def rims(self) -> RimSource | None:
        return None

    def ocsp_responses(self, at: int) -> tuple[bytes, ...]:
        return ()

    def set_ready(self) -> None:
        with self._session():
            self._call(
                "nvmlSystemSetConfComputeGpusReadyState",
                self._nvml.nvmlSystemSetConfComputeGpusReadyState,
                1,
            )


def _sized(array: Any, size: object, what: str) -> bytes:
    """The first ``size`` bytes of an NVML output array, refusing sizes it cannot hold."""
    data = bytes(array)
    if not isinstance(size, int) or not 0 < size <= min(len(data), _MAX_CHAIN):
        raise GpuError(f"NVML returned a {what} size of {size!r}", code="gpu_nvml_error")
    return data[:size]


def nvml_probe(nvml: ModuleType | None) -> tuple[int, str]:
    """How many GPUs NVML sees and why: ``(0, reason)`` where there is no library, driver or
    GPU. Other NVML failures raise ``gpu_nvml_error``: a broken driver is not "no GPU"."""
    if nvml is None:
        return 0, "nvidia-ml-py not installed"
    backend = NvmlBackend(nvml)
    try:
        with backend._session():
            count = len(backend._handles())
    except GpuError as exc:
        if exc.code == "gpu_unavailable":
            return 0, exc.message
        raise
    return count, f"NVML sees {count} GPU(s)" if count else "NVML sees no GPU"
