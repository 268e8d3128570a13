"""The GPU evidence verification pipeline (docs/gpu.md).

Fail-closed: numbered steps run in a fixed order, the first failure stops the run, and the
result is ``ok`` only when every step ran and passed. Time, the expected nonce, trust roots,
RIM sources and OCSP answers are arguments; nothing is read from the clock or the network
here except through the injected sources. Time-independent work (device chain links, RIM
signatures) is cached by the exact bytes it was computed from; validity is checked every time.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, TypeVar

from cllm.errors import CllmError, VerificationError
from cllm.gpu import _layout as L
from cllm.gpu._appraise import Appraisal, appraise
from cllm.gpu._chain import (
    DeviceIdentity,
    GpuArch,
    check_validity,
    device_identity,
    ecdsa_p384_verify,
    parse_pem_chain,
)
from cllm.gpu._ocsp import OcspPolicy, check_chain_revocation
from cllm.gpu._report import GpuReport, parse_report
from cllm.gpu._result import GpuClaims, GpuVerification, MeasurementClaims, RimClaims
from cllm.gpu._rim import Rim, RimKind, parse_rim
from cllm.gpu._roots import GpuTrustRoots
from cllm.gpu._sources import RimSource
from cllm.verify import Step

__all__ = ["NO_RIMS", "GpuVerifier", "driver_rim_id", "vbios_rim_id", "verify_gpu_evidence"]

_log = logging.getLogger(__name__)

_GPU_INFO_ARCH: Final = {L.GPU_INFO_HOPPER: GpuArch.HOPPER, L.GPU_INFO_BLACKWELL: GpuArch.BLACKWELL}
# OCSP positions NVIDIA's verifiers check: device certs len-2..1 (the leaf is never answered for),
# RIM chain certs 0..2 (never the root).
_DEVICE_OCSP: Final = (3, 2, 1)
_RIM_OCSP: Final = (0, 1, 2)


class _NoRims:
    """The explicit "no RIM source": with ``rims_required=()`` nothing is appraised."""

    def find(self, rim_id: str, kind: RimKind, version: str) -> bytes | None:
        return None


NO_RIMS: Final = _NoRims()


def driver_rim_id(report: GpuReport, arch: GpuArch) -> str | None:
    version = report.opaque.driver_version
    if version is None:
        return None
    if arch is GpuArch.HOPPER:
        return f"NV_GPU_DRIVER_GH100_{version}"
    chip = report.opaque.text(L.OPAQUE_CHIP_INFO) or "GB100"
    return f"NV_GPU_CC_DRIVER_{chip}_{version}"


def vbios_rim_id(report: GpuReport) -> str | None:
    o = report.opaque
    parts = (o.text(L.OPAQUE_PROJECT), o.text(L.OPAQUE_PROJECT_SKU), o.text(L.OPAQUE_CHIP_SKU))
    vbios = o.vbios_version
    if vbios is None or any(not part for part in parts):
        return None
    return "NV_GPU_VBIOS_" + "_".join(p.upper() for p in parts if p) + "_" + vbios.replace(".", "")


@dataclass(slots=True)
class _Run:
    report_input: bytes
    chain_input: bytes | str
    expected_nonce: bytes
    rims: RimSource
    rims_required: tuple[RimKind, ...]
    ocsp: OcspPolicy
    at: int
    declared_arch: GpuArch | None
    allow_trailing_zeros: bool
    require_fwid: bool
    report: GpuReport | None = None
    identity: DeviceIdentity | None = None
    arch: GpuArch | None = None
    device_ocsp: str | None = None
    verified_rims: list[tuple[Rim, str, int, str]] = field(default_factory=list)
    appraisal: Appraisal | None = None


def _timestamp(at: int | datetime) -> int:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("evaluation time must be timezone-aware")
        return int(at.timestamp())
    if isinstance(at, bool) or not isinstance(at, int):
        raise TypeError("evaluation time must be unix seconds (int) or an aware datetime")
    return at


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


_MODES: Final = {0: "SPT", 1: "MPT", 2: "PPCIE"}


def _mode(flag: bytes | None) -> str | None:
    if flag is None:
        return None
    value = int.from_bytes(flag, "little")
    return _MODES.get(value, f"unknown ({value})")


class GpuVerifier:
    """Verifies NVIDIA GPU evidence under one pair of trust roots.

    Long-lived: device chains and RIMs that verified are remembered by their exact bytes, so a
    warm verification costs one ECDSA P-384 check (the report's) plus the appraisal.
    """

    def __init__(self, *, roots: GpuTrustRoots, cache_size: int = 256) -> None:
        self._roots = roots
        cached = functools.lru_cache(maxsize=cache_size)
        self._identity = cached(self._identity_uncached)
        self._rim = cached(self._rim_uncached)
        self._steps: tuple[tuple[str, Callable[[_Run], None]], ...] = (
            ("parse_report", self._step_parse_report),
            ("device_chain", self._step_device_chain),
            ("architecture", self._step_architecture),
            ("fwid", self._step_fwid),
            ("report_signature", self._step_report_signature),
            ("nonce", self._step_nonce),
            ("device_revocation", self._step_device_revocation),
            ("driver_rim", functools.partial(self._step_rim, kind=RimKind.DRIVER)),
            ("vbios_rim", functools.partial(self._step_rim, kind=RimKind.VBIOS)),
            ("measurements", self._step_measurements),
        )
        # A passed step is the same value on every run: built once, not per verification.
        self._passed = tuple(
            Step(number, name, True) for number, (name, _) in enumerate(self._steps, start=1)
        )

    @property
    def roots(self) -> GpuTrustRoots:
        return self._roots

    def verify(
        self,
        report: bytes,
        *,
        chain: bytes | str,
        expected_nonce: bytes,
        rims: RimSource,
        rims_required: Sequence[RimKind],
        ocsp: OcspPolicy,
        at: int | datetime,
        declared_arch: GpuArch | None = None,
        allow_trailing_zeros: bool = False,
        require_fwid: bool = False,
    ) -> GpuVerification:
        """Verify one GPU's report (request || signed response) and PEM chain (leaf first).

        ``rims_required``: the RIM kinds that must be found, verified and matched; other kinds
        are appraised when ``rims`` has them. ``declared_arch``, when given (NVML's answer), must
        agree with the certificate and the report. ``allow_trailing_zeros`` tolerates zero
        bytes after the signature (logged).
        """
        if len(expected_nonce) != L.NONCE_SIZE:
            raise ValueError("expected nonce must be 32 bytes")
        if allow_trailing_zeros:
            _log.warning("GPU report: trailing zero bytes after the signature are tolerated")
        run = _Run(
            report_input=report,
            chain_input=chain,
            expected_nonce=expected_nonce,
            rims=rims,
            rims_required=tuple(rims_required),
            ocsp=ocsp,
            at=_timestamp(at),
            declared_arch=declared_arch,
            allow_trailing_zeros=allow_trailing_zeros,
            require_fwid=require_fwid,
        )
        steps: list[Step] = []
        error: CllmError | None = None
        for passed, (name, step) in zip(self._passed, self._steps, strict=True):
            try:
                step(run)
            except CllmError as exc:
                error = exc
            except Exception as exc:  # fail closed on anything unforeseen, and say so
                _log.exception("GPU verification step %s failed unexpectedly", name)
                error = VerificationError(
                    f"unexpected {type(exc).__name__} in step {name}", code="internal_error"
                )
            if error is not None:
                steps.append(Step(passed.number, name, False, error.code, error.message))
                break
            steps.append(passed)
        return GpuVerification(
            ok=error is None,
            steps=tuple(steps),
            error=error,
            evaluated_at=run.at,
            claims=self._claims(run),
        )

    # -- cached, time-independent work -----------------------------------------------------

    def _identity_uncached(self, chain: bytes | str) -> DeviceIdentity:
        certs = parse_pem_chain(chain, what="device chain")
        return device_identity(certs, root_der=self._roots.device_der)

    def _rim_uncached(self, data: bytes) -> Rim:
        return parse_rim(data, root_der=self._roots.rim_der)

    def verify_rim(self, data: bytes, *, at: int | datetime) -> tuple[Rim, int]:
        """A RIM on its own: structure, signature, digest, chain; valid at ``at``. Returns the
        RIM and its signing chain's earliest expiry."""
        rim = self._rim(data)
        return rim, rim.check_validity(_timestamp(at))

    # -- steps -----------------------------------------------------------------------------

    def _step_parse_report(self, run: _Run) -> None:
        run.report = parse_report(run.report_input, allow_trailing_zeros=run.allow_trailing_zeros)

    def _step_device_chain(self, run: _Run) -> None:
        run.identity = self._identity(run.chain_input)
        identity = run.identity
        check_validity(
            identity.certificates,
            run.at,
            what="device chain",
            prefix="gpu",
            windows=identity.windows,
        )

    def _step_architecture(self, run: _Run) -> None:
        report, identity = _need(run.report), _need(run.identity)
        arch = identity.arch
        gpu_info = report.opaque.gpu_info
        if gpu_info is not None and _GPU_INFO_ARCH.get(gpu_info) is not arch:
            raise VerificationError(
                f"report GPU_INFO {gpu_info:#06x} is not a {arch} GPU ('{identity.leaf_cn}')",
                code="gpu_arch_mismatch",
            )
        if run.declared_arch is not None and run.declared_arch is not arch:
            raise VerificationError(
                f"declared architecture {run.declared_arch} but the certificate is {arch}",
                code="gpu_arch_mismatch",
            )
        # GSP keys sign confidential-computing reports (64 digests + opaque data); FSP keys
        # sign the mixed-type FSP transcript without opaque data.
        gsp_shaped = report.is_gsp and bool(report.opaque)
        if gsp_shaped != (identity.firmware == "GSP"):
            raise VerificationError(
                f"report shape does not fit a {identity.firmware} key", code="gpu_arch_mismatch"
            )
        run.arch = arch

    def _step_fwid(self, run: _Run) -> None:
        report, identity = _need(run.report), _need(run.identity)
        fwid = report.opaque.fwid
        if fwid is None:
            if run.require_fwid:
                raise VerificationError("report carries no FWID", code="gpu_fwid_missing")
            return
        if identity.fwid is None or not hmac.compare_digest(fwid, identity.fwid):
            raise VerificationError(
                "FWID in the report differs from the device leaf certificate's",
                code="gpu_fwid_mismatch",
            )

    def _step_report_signature(self, run: _Run) -> None:
        report, identity = _need(run.report), _need(run.identity)
        if not ecdsa_p384_verify(identity.leaf_key, report.signature, report.signed_data):
            raise VerificationError(
                "report signature does not verify with the device leaf key",
                code="gpu_report_signature_invalid",
            )

    def _step_nonce(self, run: _Run) -> None:
        if not hmac.compare_digest(_need(run.report).request_nonce, run.expected_nonce):
            raise VerificationError(
                "the report's request nonce is not the expected nonce", code="gpu_nonce_mismatch"
            )

    def _step_device_revocation(self, run: _Run) -> None:
        chain = _need(run.identity).certificates
        outcome = check_chain_revocation(
            chain, _DEVICE_OCSP, policy=run.ocsp, at=run.at, what="device chain"
        )
        run.device_ocsp = outcome.status

    def _step_rim(self, run: _Run, *, kind: RimKind) -> None:
        required = kind in run.rims_required
        if not required and run.rims is NO_RIMS:
            return  # no RIM source and none required: nothing to look up
        report, arch = _need(run.report), _need(run.arch)
        if kind is RimKind.DRIVER:
            rim_id, version = driver_rim_id(report, arch), report.opaque.driver_version
        else:
            rim_id, version = vbios_rim_id(report), report.opaque.vbios_version
        if rim_id is None or version is None:
            if required:
                raise VerificationError(
                    f"the report names no {kind} version to find a RIM for", code="gpu_rim_missing"
                )
            return
        data = run.rims.find(rim_id, kind, version)
        if data is None:
            if required:
                raise VerificationError(f"no RIM {rim_id} available", code="gpu_rim_missing")
            return
        rim = self._rim(data)
        expires = rim.check_validity(run.at)
        if rim.kind is not kind:
            raise VerificationError(
                f"{rim_id}: the RIM given is a {rim.kind} RIM", code="gpu_rim_version_mismatch"
            )
        if rim.version.lower() != version.lower():
            raise VerificationError(
                f"{kind} RIM is for version {rim.version}, the report has {version}",
                code="gpu_rim_version_mismatch",
            )
        # Blackwell reports name their chip (CHIP_INFO, e.g. a GB100 derivative); RIMs use it.
        chip = report.opaque.text(L.OPAQUE_CHIP_INFO) or _need(run.identity).chip
        if rim.product != chip:
            raise VerificationError(
                f"{kind} RIM is for {rim.product}, the GPU is {chip}",
                code="gpu_rim_product_mismatch",
            )
        outcome = check_chain_revocation(
            rim.chain, _RIM_OCSP, policy=run.ocsp, at=run.at, what=f"{kind} RIM chain"
        )
        run.verified_rims.append((rim, rim_id, expires, outcome.status))

    def _step_measurements(self, run: _Run) -> None:
        if not run.verified_rims:
            return  # nothing required was missing (checked above), nothing to appraise
        run.appraisal = appraise(_need(run.report), tuple(rim for rim, *_ in run.verified_rims))
        if not run.appraisal.matched:
            raise VerificationError(
                "measurements differ from the RIMs at indices "
                + ", ".join(str(i) for i in run.appraisal.mismatched_indices),
                code="gpu_measurement_mismatch",
            )

    # -- claims ----------------------------------------------------------------------------

    def _claims(self, run: _Run) -> GpuClaims | None:
        report, identity = run.report, run.identity
        if report is None:
            return None
        o = report.opaque
        measurements = None
        if run.appraisal is not None:
            measurements = MeasurementClaims(
                matched=run.appraisal.matched,
                mismatched_indices=run.appraisal.mismatched_indices,
                appraised_indices=run.appraisal.appraised_indices,
                skipped_indices=run.appraisal.skipped_indices,
                rims=tuple(
                    RimClaims(rim.kind, rim_id, rim.version, rim.sha384.hex(), expires, status)
                    for rim, rim_id, expires, status in run.verified_rims
                ),
            )
        return GpuClaims(
            arch=str(identity.arch) if identity else None,
            chip=identity.chip if identity else None,
            firmware=identity.firmware if identity else None,
            roots=self._roots.name,
            nvidia_hardware=self._roots.is_nvidia,
            nonce=report.request_nonce.hex(),
            driver_version=o.driver_version,
            vbios_version=o.vbios_version,
            fwid=_hex(o.fwid),
            leaf_fwid=_hex(identity.fwid) if identity else None,
            ueid=identity.ueid if identity else None,
            hwmodel=identity.hwmodel if identity else None,
            device_serial=identity.device_serial if identity else None,
            project=o.text(L.OPAQUE_PROJECT),
            project_sku=o.text(L.OPAQUE_PROJECT_SKU),
            chip_sku=o.text(L.OPAQUE_CHIP_SKU),
            nvdec0_status=_hex(o.get(L.OPAQUE_NVDEC0_STATUS)),
            protected_pcie_status=_hex(o.get(L.OPAQUE_PROTECTED_PCIE_STATUS)),
            feature_flag=_hex(o.get(L.OPAQUE_FEATURE_FLAG)),
            mode=_mode(o.get(L.OPAQUE_FEATURE_FLAG)),
            opaque_data_version=_hex(o.get(L.OPAQUE_DATA_VERSION)),
            trailing_bytes=report.trailing_bytes,
            ocsp=run.device_ocsp,
            measurements=measurements,
        )


_T = TypeVar("_T")


def _need(value: _T | None) -> _T:
    if value is None:  # pragma: no cover - steps run in order; a missing input is a bug
        raise VerificationError("pipeline step ran before its input", code="internal_error")
    return value


_VERIFIERS: dict[GpuTrustRoots, GpuVerifier] = {}


def verify_gpu_evidence(
    report: bytes,
    *,
    chain: bytes | str,
    expected_nonce: bytes,
    rims: RimSource,
    rims_required: Sequence[RimKind],
    ocsp: OcspPolicy,
    at: int | datetime,
    roots: GpuTrustRoots,
    declared_arch: GpuArch | None = None,
) -> GpuVerification:
    """One GPU's evidence through the pipeline, with a verifier (and its caches) kept per
    trust roots. Roots are required: pass ``nvidia_roots()`` for real hardware."""
    verifier = _VERIFIERS.get(roots)
    if verifier is None:
        verifier = _VERIFIERS.setdefault(roots, GpuVerifier(roots=roots))
    return verifier.verify(
        report,
        chain=chain,
        expected_nonce=expected_nonce,
        rims=rims,
        rims_required=rims_required,
        ocsp=ocsp,
        at=at,
        declared_arch=declared_arch,
    )
