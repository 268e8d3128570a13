"""The GPU boot gate of ``cllm serve`` (docs/gpu.md, "Collection and the boot gate").

Before the server listens: choose the GPU backend, decide the GPU mode (``--gpu``; by default
``required`` when the backend finds GPUs, ``off`` when it finds none), and, unless ``off``,
collect one report per GPU for a fresh nonce and verify them as a set with ``cllm.gpu`` under
the backend's roots, RIMs and the configured OCSP mode. ``required`` refuses to start on any
failure (``gpu_unavailable``, ``gpu_cc_off``, ``gpu_devtools_mode``, ``gpu_nvml_error``,
``gpu_evidence_rejected``); ``optional`` starts and says why the GPUs are unattested. Either way
the outcome is one ``cllm.gpu`` event, extended into RTMR3 with the other components.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

import httpx

from cllm._internal.frozen_json import freeze_json
from cllm._internal.jcs import canonical_json
from cllm.errors import GpuError
from cllm.gpu import (
    GpuBackend,
    GpuCcState,
    GpuDevice,
    GpuEvidence,
    GpuVerifier,
    OcspFetcher,
    OcspMode,
    OcspPolicy,
    RimDirectory,
    RimKind,
    RimService,
    RimSource,
    SelectedGpuBackend,
    select_gpu_backend,
    verify_bundle,
)
from cllm.measure import MEASURED_RTMR, Event
from cllm.server._settings import ServeSettings

__all__ = ["GPU_EVENT_TYPE", "GpuGate", "evidence_digest", "gpu_boot_gate"]

_log = logging.getLogger(__name__)

GPU_EVENT_TYPE: Final = "cllm.gpu"
GpuStatus = Literal["attested", "unattested", "absent", "off"]


@dataclass(frozen=True, slots=True)
class GpuGate:
    mode: str  # required, optional, off
    backend: str
    reason: str  # why this backend
    status: GpuStatus
    error_code: str | None  # why unattested (optional mode)
    event: Event | None  # None only when off
    # For the per-attestation GPU evidence (``_gpu_evidence``): the backend, the GPUs it found,
    # their confidential-computing state, and the RIM documents the gate verified with.
    source: GpuBackend | None = None
    devices: tuple[GpuDevice, ...] = ()
    cc: GpuCcState | None = None
    rim_documents: tuple[bytes, ...] = ()

    def describe(self) -> str:
        """One line for the start-up summary."""
        why = f", {self.error_code}" if self.error_code else ""
        fake = " [SIMULATED GPU, not NVIDIA hardware]" if self.backend == "simulated" else ""
        return f"--gpu {self.mode}, backend {self.backend}: {self.reason}{why}{fake}"


def evidence_digest(evidence: tuple[GpuEvidence, ...]) -> bytes:
    """SHA-384 over every GPU in order: u32be length || report || u32be length || chain."""
    h = hashlib.sha384()
    for item in evidence:
        for part in (item.report, item.chain_pem):
            h.update(len(part).to_bytes(4, "big") + part)
    return h.digest()


class _Recording:
    """A RIM source that remembers what it handed out (the server carries those RIMs in its
    evidence, so verifiers need not fetch them; they verify them like any other)."""

    def __init__(self, inner: RimSource) -> None:
        self._inner = inner
        self.found: list[bytes] = []

    def find(self, rim_id: str, kind: RimKind, version: str) -> bytes | None:
        data = self._inner.find(rim_id, kind, version)
        if data is not None and data not in self.found:
            self.found.append(data)
        return data


def _rims(
    settings: ServeSettings, backend: GpuBackend, client: httpx.Client
) -> tuple[RimSource, str]:
    if settings.gpu_rim_dir is not None:
        return RimDirectory(settings.gpu_rim_dir), f"directory:{settings.gpu_rim_dir}"
    own = backend.rims()
    if own is not None:
        return own, f"backend:{backend.name}"
    return RimService(client=client), "nvidia-rim-service"


def _policy(settings: ServeSettings, backend: GpuBackend, rims_label: str) -> dict[str, object]:
    roots = backend.trust_roots()
    return {
        "rims": rims_label,
        "rims_required": ["driver", "vbios"],
        "ocsp": settings.gpu_ocsp,
        "roots": roots.name,
        "nvidia_roots": roots.is_nvidia,
    }


def _verify(
    settings: ServeSettings,
    backend: GpuBackend,
    *,
    clock: Callable[[], float],
    nonce: bytes,
) -> tuple[dict[str, object], list[dict[str, object]], bytes, tuple[bytes, ...]]:
    """Collect and verify; returns (policy, per-GPU attested claims, evidence digest, the RIM
    documents used)."""
    evidence = backend.collect(nonce)
    at = int(clock())
    with httpx.Client(timeout=10.0) as client:
        found, label = _rims(settings, backend, client)
        rims = _Recording(found)
        policy = _policy(settings, backend, label)
        fetcher = (
            OcspFetcher(client=client, clock=clock, nonce=lambda: secrets.token_bytes(32))
            if not backend.simulated
            else None
        )
        bundle = verify_bundle(
            GpuVerifier(roots=backend.trust_roots()),
            [(item.report, item.chain_pem) for item in evidence],
            expected_nonce=nonce,
            rims=rims,
            rims_required=(RimKind.DRIVER, RimKind.VBIOS),
            ocsp=OcspPolicy(
                OcspMode(settings.gpu_ocsp),
                responses=backend.ocsp_responses(at),
                fetcher=fetcher,
            ),
            at=at,
        )
    if not bundle.ok:
        error = bundle.error
        code = error.code if error is not None else "internal_error"
        message = error.message if error is not None else "GPU evidence did not verify"
        raise GpuError(
            f"GPU evidence rejected locally ({code}): {message}", code="gpu_evidence_rejected"
        )
    gpus: list[dict[str, object]] = []
    for result in bundle.results:
        claims = result.claims
        assert claims is not None  # ok results carry claims
        measured = claims.measurements
        gpus.append(
            {
                "ueid": claims.ueid,
                "hwmodel": claims.hwmodel,
                "arch": claims.arch,
                "driver_version": claims.driver_version,
                "vbios_version": claims.vbios_version,
                "mode": claims.mode,
                "nvidia_hardware": claims.nvidia_hardware,
                "measurements": "matched" if measured and measured.matched else "not_appraised",
                "ocsp": claims.ocsp,
            }
        )
    backend.set_ready()
    return policy, gpus, evidence_digest(evidence), tuple(rims.found)


def _present(devices: tuple[GpuDevice, ...]) -> list[dict[str, object]]:
    return [
        {
            "arch": d.arch,
            "name": d.name,
            "uuid": d.uuid,
            "driver_version": d.driver_version,
            "vbios_version": d.vbios_version,
        }
        for d in devices
    ]


def _drop_none(value: object) -> object:
    """Event values may not be null: absent facts are left out."""
    if isinstance(value, Mapping):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _event(details: dict[str, object]) -> Event:
    clean = _drop_none(details)
    frozen = freeze_json(clean, depth=2)
    assert isinstance(frozen, Mapping)
    return Event(
        rtmr=MEASURED_RTMR,
        type=GPU_EVENT_TYPE,
        name="gpus",
        digest=hashlib.sha384(canonical_json(clean)).digest(),
        details=frozen,
    )


def _found(
    settings: ServeSettings, *, clock: Callable[[], float], selected: SelectedGpuBackend | None
) -> tuple[SelectedGpuBackend, tuple[GpuDevice, ...], GpuError | None]:
    chosen = selected or select_gpu_backend(
        settings.gpu_backend, state_dir=settings.state_dir, clock=clock
    )
    try:
        return chosen, chosen.backend.devices(), None
    except GpuError as exc:
        return chosen, (), exc


def _mode(settings: ServeSettings, devices: tuple[GpuDevice, ...], error: GpuError | None) -> str:
    """The effective ``--gpu``: as given, else required where GPUs (or a failing driver) are
    found, else off."""
    return settings.gpu or ("required" if devices or error else "off")


def effective_gpu_settings(
    settings: ServeSettings,
    *,
    clock: Callable[[], float],
    selected: SelectedGpuBackend | None = None,
) -> ServeSettings:
    """The settings with the ``gpu`` mode the boot gate would use, without collecting any
    evidence (``cllm serve --print-config`` prints exactly what a start measures)."""
    _, devices, error = _found(settings, clock=clock, selected=selected)
    return settings.model_copy(update={"gpu": _mode(settings, devices, error)})


def gpu_boot_gate(
    settings: ServeSettings,
    *,
    clock: Callable[[], float],
    selected: SelectedGpuBackend | None = None,
    nonce: Callable[[], bytes] = lambda: secrets.token_bytes(32),
) -> tuple[ServeSettings, GpuGate]:
    """The settings with the effective ``gpu`` mode, and the gate's outcome. Raises
    ``GpuError`` when ``required`` is not met. ``selected`` replaces the backend choice
    (tests)."""
    chosen, devices, device_error = _found(settings, clock=clock, selected=selected)
    backend = chosen.backend
    mode = _mode(settings, devices, device_error)
    settings = settings.model_copy(update={"gpu": mode})
    if mode == "off":
        return settings, GpuGate("off", backend.name, chosen.reason, "off", None, None)
    state: GpuCcState | None = None
    details: dict[str, object] = {
        "setting": mode,
        "backend": backend.name,
        "simulated": backend.simulated,
        "count": len(devices),
        "present": _present(devices),
    }
    try:
        if device_error is not None:
            raise device_error
        if not devices:
            raise GpuError(
                f"--gpu {mode} but no GPU is present ({chosen.reason})", code="gpu_unavailable"
            )
        state = backend.cc_state()
        details["cc"] = state.mode
        details["cc_environment"] = state.environment
        details["multi_gpu_mode"] = state.multi_gpu_mode
        if state.devtools:  # whatever a backend's collect would do: its reports prove nothing
            raise GpuError("confidential computing is in DevTools mode", code="gpu_devtools_mode")
        policy, gpus, digest, rim_documents = _verify(settings, backend, clock=clock, nonce=nonce())
    except GpuError as exc:
        if mode == "required":
            raise
        _log.warning("GPUs not attested (--gpu optional): [%s] %s", exc.code, exc.message)
        status: GpuStatus = "absent" if not devices and device_error is None else "unattested"
        details.update({"status": status, "attested": False, "reason": exc.code})
        gate = GpuGate(
            mode,
            backend.name,
            chosen.reason,
            status,
            exc.code,
            _event(details),
            source=backend,
            devices=devices,
            cc=state,
        )
        return settings, gate
    details.update(
        {
            "status": "attested",
            "attested": True,
            "gpus": gpus,
            "ueids": [g["ueid"] for g in gpus],
            "arch": gpus[0]["arch"],
            "driver_versions": sorted({str(g["driver_version"]) for g in gpus}),
            "vbios_versions": sorted({str(g["vbios_version"]) for g in gpus}),
            "mode": gpus[0]["mode"],
            "evidence_sha384": digest.hex(),
            "policy": policy,
            "policy_sha384": hashlib.sha384(canonical_json(policy)).hexdigest(),
        }
    )
    gate = GpuGate(
        mode,
        backend.name,
        chosen.reason,
        "attested",
        None,
        _event(details),
        source=backend,
        devices=devices,
        cc=state,
        rim_documents=rim_documents,
    )
    return settings, gate
