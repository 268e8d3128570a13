"""GPU steps of the appraisal (docs/protocol.md "GPU evidence", docs/policy.md "[gpu]").

``GpuAppraiser.appraise(evidence, policy=, at=)`` runs numbered fail-closed steps over the
evidence's ``gpu`` field and returns the steps, the findings (status and reason each) and the
``gpus`` token claim. The TD side (quote, binding, event log) is judged elsewhere; these steps
rely on the binding being the one the quote commits to, which the TD steps check.

1 ``gpu_present``: a ``gpu`` field exactly when the binding commits to one (``gpu_sha384``);
  none at all is fine unless the policy requires GPUs (``gpu_required``).
2 ``gpu_parse``: the field decodes (``gpu_evidence_malformed``).
3 ``gpu_binding``: its digest is the binding's ``gpu_sha384`` (``gpu_evidence_digest_mismatch``).
4 ``gpu_state``: not DevTools (``gpu_devtools_mode``); GPUs stated unattested end here
  (``gpu_unattested``: a warning, contraindicated when the policy requires GPUs); an attested
  field has one report per present GPU (``gpu_report_missing``).
5 ``gpu_roots``: NVIDIA's roots, or for a simulated GPU the roots the verifier was told to trust
  (``simulated_gpu_not_trusted``).
6 ``gpu_nonce``: every report's request nonce is ``gpu_nonce(anchor, keys digest)``, the anchor
  being the batch root (version 2) or the client's nonce (version 1) (``gpu_nonce_mismatch``).
7 ``gpu_verify``: every report through ``cllm.gpu``'s pipeline and the set's coherence (its
  codes: ``gpu_chain_untrusted``, ``gpu_measurement_mismatch``, ``gpu_bundle_duplicate_device``...).
8 ``gpu_policy``: count, architectures, driver and VBIOS versions, mode (``gpu_count_mismatch``,
  ``gpu_arch_not_allowed``, ``gpu_driver_version_rejected``, ``gpu_vbios_version_rejected``,
  ``gpu_mode_not_allowed``).

A simulated GPU that passes is a warning (``simulated_gpu``), never better.
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx

from cllm.errors import CllmError, EvidenceError, VerificationError
from cllm.evidence import Evidence
from cllm.gpu import (
    GpuBundleVerification,
    GpuDocument,
    GpuTrustRoots,
    GpuVerification,
    GpuVerifier,
    OcspFetcher,
    OcspMode,
    OcspPolicy,
    OcspSource,
    RimFiles,
    RimKind,
    RimService,
    RimSource,
    RimSources,
    gpu_document_digest,
    gpu_nonce,
    nvidia_roots,
    parse_gpu_document,
    parse_report,
    simulated_roots_from_pem,
    verify_bundle,
)
from cllm.policy import Policy, Reason, StatusName
from cllm.verify import Step

__all__ = ["GpuAppraiser", "GpuOutcome", "GpuRun", "GpuTrust", "load_simulated_gpu_root"]

_log = logging.getLogger(__name__)

_MODE_CLAIM: Final = {"SPT": "cc", "MPT": "mgpu", "PPCIE": "ppcie"}
_MODE_POLICY: Final = {"SPT": "single", "MPT": "multi", "PPCIE": "ppcie"}
_OCSP_CLAIM: Final = {"good": "good", "unknown": "unknown", "unavailable": "unknown", "off": "off"}
_FATAL: Final[StatusName] = "contraindicated"


def load_simulated_gpu_root(path: Path) -> GpuTrustRoots:
    """``--trust-simulated-gpu-root PEM`` (what ``cllm gpu simulated-root`` prints): the device
    and RIM roots of a simulated GPU. NVIDIA's own roots are refused (``config_invalid``): they
    must never be relabelled as a simulation."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise CllmError(
            f"cannot read the simulated GPU root {path}: {exc.strerror}", code="config_invalid"
        ) from exc
    roots = simulated_roots_from_pem(pem)
    if roots.is_nvidia:
        raise CllmError(
            "--trust-simulated-gpu-root must not be NVIDIA's roots", code="config_invalid"
        )
    _log.warning("trusting a SIMULATED GPU root (%s): its GPUs are never above warning", path)
    return roots


@dataclass(frozen=True, slots=True)
class GpuTrust:
    """The GPU side of a verifier's trust configuration.

    ``simulated``: roots of a simulated GPU (``--trust-simulated-gpu-root``), else simulated GPU
    evidence is refused. ``rims``: the verifier's own RIM source for hardware GPUs, consulted
    after the RIMs the evidence carries (None: NVIDIA's RIM service). ``ocsp``: where hardware
    OCSP answers come from beyond those the evidence carries (None: NVIDIA's responder)."""

    simulated: GpuTrustRoots | None = None
    rims: RimSource | None = None
    ocsp: OcspSource | None = None
    http: httpx.Client | None = None
    clock: Callable[[], float] = time.time
    # False (``Trust.offline``): hardware RIMs and OCSP answers only as carried or given here,
    # never fetched from NVIDIA.
    fetch: bool = True


@dataclass(frozen=True, slots=True)
class GpuOutcome:
    steps: tuple[Step, ...]
    findings: tuple[tuple[StatusName, Reason], ...]
    gpus: tuple[dict[str, Any], ...]  # the ``gpus`` claim
    simulated: bool  # a simulated GPU passed: the verdict is capped at warning

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return tuple(reason for _, reason in self.findings)


@dataclass(slots=True)
class GpuRun:
    """One GPU appraisal, filled step by step (``GpuAppraiser.start``, then each step)."""

    evidence: Evidence
    policy: Policy
    at: int
    document: GpuDocument | None = None
    roots: GpuTrustRoots | None = None
    expected_nonce: bytes | None = None
    bundle: GpuBundleVerification | None = None
    findings: list[tuple[StatusName, Reason]] = field(default_factory=list)
    per_gpu_errors: dict[int, Reason] = field(default_factory=dict)
    over: bool = False  # a step stopped the GPU appraisal (failed, or nothing more to check)


class _StopError(Exception):
    """A step ended the GPU appraisal without a failure (nothing more to check)."""


def _version(text: str, base: int) -> tuple[int, ...] | None:
    try:
        return tuple(int(part, base) for part in text.split("."))
    except ValueError:
        return None


class GpuAppraiser:
    """GPU appraisal under one ``GpuTrust`` (long-lived: verifiers cache chains and RIMs)."""

    def __init__(self, trust: GpuTrust | None = None) -> None:
        self._trust = trust or GpuTrust()
        self._verifiers: dict[GpuTrustRoots, GpuVerifier] = {}
        self._http: httpx.Client | None = self._trust.http
        self._service: RimService | None = None
        self._fetcher: OcspFetcher | None = None
        # Carried RIMs are the same in every document of a server: indexed once.
        self._carried = functools.lru_cache(maxsize=16)(RimFiles)
        self._steps: tuple[tuple[str, Callable[[GpuRun], None]], ...] = (
            ("gpu_present", self._present),
            ("gpu_parse", self._parse),
            ("gpu_binding", self._binding),
            ("gpu_state", self._state),
            ("gpu_roots", self._roots),
            ("gpu_nonce", self._nonce),
            ("gpu_verify", self._verify),
            ("gpu_policy", self._policy),
        )
        self._step_by_name = dict(self._steps)

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._steps)

    def start(self, evidence: Evidence, *, policy: Policy, at: int) -> GpuRun:
        return GpuRun(evidence=evidence, policy=policy, at=at)

    def run_step(self, name: str, run: GpuRun) -> None:
        """Step ``name`` on ``run``: its findings are appended to ``run.findings``; after a step
        that stopped the GPU appraisal, later steps do nothing."""
        if run.over:
            return
        step = self._step_by_name[name]
        try:
            step(run)
        except _StopError:
            run.over = True
        except CllmError as exc:
            run.findings.append((_FATAL, Reason(exc.code, exc.message)))
        except Exception as exc:  # fail closed on a defect, and say so
            _log.exception("GPU appraisal step %s failed unexpectedly", name)
            message = f"unexpected {type(exc).__name__} in GPU step {name}"
            run.findings.append((_FATAL, Reason("internal_error", message)))
        if _first_fatal(run.findings) is not None:
            run.over = True

    def claims(self, run: GpuRun) -> list[dict[str, Any]]:
        """The ``gpus`` claim, as far as the run got."""
        return self._claims(run)

    @staticmethod
    def simulated_passed(run: GpuRun) -> bool:
        """A simulated GPU's evidence passed: the verdict must say so and stay at warning."""
        return (
            _first_fatal(run.findings) is None
            and run.document is not None
            and run.document.simulated
            and run.document.status == "attested"
            and run.bundle is not None
        )

    def appraise(self, evidence: Evidence, *, policy: Policy, at: int) -> GpuOutcome:
        """All GPU steps at once (without the TD's): steps, findings, claims."""
        run = self.start(evidence, policy=policy, at=at)
        steps: list[Step] = []
        for number, (name, _) in enumerate(self._steps, start=1):
            if run.over:
                break
            before = len(run.findings)
            self.run_step(name, run)
            failed = _first_fatal(run.findings[before:])
            if failed is None:
                steps.append(Step(number, name, True))
            else:
                steps.append(Step(number, name, False, failed.code, failed.message))
        simulated = self.simulated_passed(run)
        if simulated:
            run.findings.append(
                ("warning", Reason("simulated_gpu", "GPU evidence comes from a simulated GPU"))
            )
        return GpuOutcome(tuple(steps), tuple(run.findings), tuple(self._claims(run)), simulated)

    # -- steps -------------------------------------------------------------------------------

    def _present(self, run: GpuRun) -> None:
        evidence, gpu_policy = run.evidence, run.policy.document.gpu
        bound = evidence.binding.gpu_sha384 is not None
        if evidence.gpu is None and bound:
            raise EvidenceError(
                "the binding commits to GPU evidence the document does not carry",
                code="gpu_evidence_missing",
            )
        if evidence.gpu is not None and not bound:
            raise EvidenceError(
                "the document carries GPU evidence the binding does not commit to",
                code="gpu_evidence_unbound",
            )
        if evidence.gpu is None:
            if gpu_policy.required:
                raise VerificationError(
                    "the policy requires attested GPUs and the evidence has none",
                    code="gpu_required",
                )
            raise _StopError

    def _parse(self, run: GpuRun) -> None:
        run.document = parse_gpu_document(run.evidence.gpu)

    def _binding(self, run: GpuRun) -> None:
        bound = _need(run.evidence.binding.gpu_sha384)
        digest = gpu_document_digest(_need(run.evidence.gpu))
        if not hmac.compare_digest(digest, bound):
            raise EvidenceError(
                "the GPU evidence is not what the binding (and so the quote) commits to",
                code="gpu_evidence_digest_mismatch",
            )

    def _state(self, run: GpuRun) -> None:
        document = _need(run.document)
        if document.cc == "devtools":
            raise VerificationError(
                "the GPUs run confidential computing in DevTools mode: their protections are "
                "relaxed for debugging",
                code="gpu_devtools_mode",
            )
        if document.status == "unattested":
            required = run.policy.document.gpu.required
            run.findings.append(
                (
                    "contraindicated" if required else "warning",
                    Reason(
                        "gpu_unattested",
                        f"{len(document.present)} GPU(s) present but not attested "
                        f"({document.reason}): what they compute is not vouched for",
                    ),
                )
            )
            raise _StopError
        present = sorted(device.index for device in document.present)
        reported = sorted(entry.index for entry in document.reports)
        if present != reported:
            raise VerificationError(
                f"GPUs {present} are present but reports came for {reported}",
                code="gpu_report_missing",
            )

    def _roots(self, run: GpuRun) -> None:
        if not _need(run.document).simulated:
            run.roots = nvidia_roots()
            return
        if self._trust.simulated is None:
            raise VerificationError(
                "simulated GPU evidence, and this verifier was not started with "
                "--trust-simulated-gpu-root",
                code="simulated_gpu_not_trusted",
            )
        run.roots = self._trust.simulated

    def _nonce(self, run: GpuRun) -> None:
        evidence = run.evidence
        anchor = evidence.batch.root if evidence.batch is not None else evidence.binding.nonce
        expected = gpu_nonce(anchor=anchor, keys_digest=evidence.binding.keys_digest())
        run.expected_nonce = expected
        for entry in _need(run.document).reports:
            report = parse_report(entry.report)
            if not hmac.compare_digest(report.request_nonce, expected):
                raise VerificationError(
                    f"GPU {entry.index}'s report answers another nonce than this attestation's "
                    "(replayed from another attestation?)",
                    code="gpu_nonce_mismatch",
                )

    def _verify(self, run: GpuRun) -> None:
        document, roots = _need(run.document), _need(run.roots)
        gpu_policy = run.policy.document.gpu
        verifier = self._verifiers.get(roots)
        if verifier is None:
            verifier = self._verifiers.setdefault(roots, GpuVerifier(roots=roots))
        carried = self._carried(document.rims)
        rims: RimFiles | RimSources = carried
        fetcher: OcspSource | None = None
        if not document.simulated:  # a simulated GPU's RIMs and OCSP exist only as carried
            own = self._trust.rims or (self._rim_service() if self._trust.fetch else None)
            rims = RimSources((carried, own)) if own is not None else carried
            fetcher = self._trust.ocsp or (self._ocsp_fetcher() if self._trust.fetch else None)
        required = (RimKind.DRIVER, RimKind.VBIOS) if gpu_policy.require_measurements else ()
        bundle = verify_bundle(
            verifier,
            [(entry.report, entry.chain_pem) for entry in document.reports],
            expected_nonce=_need(run.expected_nonce),
            rims=rims,
            rims_required=required,
            ocsp=OcspPolicy(OcspMode(gpu_policy.ocsp), responses=document.ocsp, fetcher=fetcher),
            at=run.at,
        )
        run.bundle = bundle
        if not bundle.ok:
            error = bundle.error
            raise VerificationError(
                error.message if error else "GPU evidence did not verify",
                code=error.code if error else "verification_failed",
            )

    def _policy(self, run: GpuRun) -> None:
        gpu_policy = run.policy.document.gpu
        document, bundle = _need(run.document), _need(run.bundle)

        def refuse(index: int | None, code: str, message: str) -> None:
            reason = Reason(code, message)
            run.findings.append((_FATAL, reason))
            if index is not None:
                run.per_gpu_errors.setdefault(index, reason)

        if gpu_policy.count is not None and len(bundle.results) != gpu_policy.count:
            refuse(
                None,
                "gpu_count_mismatch",
                f"{len(bundle.results)} GPU(s) attested, the policy requires {gpu_policy.count}",
            )
        for entry, result in zip(document.reports, bundle.results, strict=True):
            claims = result.claims
            assert claims is not None  # a passing result has claims
            arch = (claims.arch or "").lower()
            if arch not in gpu_policy.allowed_architectures:
                refuse(entry.index, "gpu_arch_not_allowed", f"GPU {entry.index} is {arch or '?'}")
            _judge_version(
                refuse,
                entry.index,
                "driver",
                claims.driver_version,
                gpu_policy.min_driver_version,
                gpu_policy.allowed_driver_versions,
                base=10,
            )
            _judge_version(
                refuse,
                entry.index,
                "vbios",
                claims.vbios_version,
                gpu_policy.min_vbios_version,
                gpu_policy.allowed_vbios_versions,
                base=16,
            )
            mode = _MODE_POLICY.get(claims.mode or "")
            if mode is None and document.multi_gpu_mode == "none" and len(bundle.results) == 1:
                mode = "single"  # drivers before FEATURE_FLAG: one GPU, no multi-GPU mode
            if mode not in gpu_policy.allowed_modes:
                refuse(
                    entry.index,
                    "gpu_mode_not_allowed",
                    f"GPU {entry.index} runs in mode {claims.mode or 'unstated'}, which the "
                    "policy does not allow",
                )
            elif mode == "ppcie" and claims.protected_pcie_status != "aa":
                refuse(
                    entry.index,
                    "gpu_mode_not_allowed",
                    f"GPU {entry.index} claims protected PCIe but its PROTECTED_PCIE_STATUS is off",
                )

    # -- sources -----------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=10.0)
        return self._http

    def _rim_service(self) -> RimService:
        if self._service is None:
            self._service = RimService(client=self._client())
        return self._service

    def _ocsp_fetcher(self) -> OcspFetcher:
        if self._fetcher is None:
            self._fetcher = OcspFetcher(
                client=self._client(),
                clock=self._trust.clock,
                nonce=lambda: secrets.token_bytes(32),
            )
        return self._fetcher

    # -- claims ------------------------------------------------------------------------------

    def _claims(self, run: GpuRun) -> list[dict[str, Any]]:
        document = run.document
        if document is None:
            return []
        if document.status == "unattested" or run.bundle is None:
            error = _first_fatal(run.findings)
            return [
                _unattested_claim(
                    index=device.index,
                    arch=device.arch,
                    driver=device.driver_version,
                    vbios=device.vbios_version,
                    mode=document.cc,
                    simulated=document.simulated,
                    status="unattested" if document.status == "unattested" else "rejected",
                    error=(
                        Reason(document.reason or "gpu_unattested", "no report for this GPU")
                        if document.status == "unattested"
                        else error
                    ),
                )
                for device in document.present
            ]
        return [
            _verified_claim(
                entry_index=entry.index,
                result=result,
                devtools=document.cc == "devtools",
                simulated=document.simulated,
                policy_error=run.per_gpu_errors.get(entry.index) or _set_error(run, result),
            )
            for entry, result in zip(document.reports, run.bundle.results, strict=True)
        ]


def _judge_version(
    refuse: Callable[[int | None, str, str], None],
    index: int,
    kind: str,
    value: str | None,
    minimum: str | None,
    allowed: tuple[str, ...] | None,
    *,
    base: int,
) -> None:
    code = f"gpu_{kind}_version_rejected"
    label = "driver" if kind == "driver" else "VBIOS"
    if minimum is None and allowed is None:
        return
    if value is None:
        refuse(index, code, f"GPU {index} states no {label} version")
        return
    if allowed is not None and value.lower() not in {item.lower() for item in allowed}:
        refuse(index, code, f"GPU {index} {label} {value} is not in the policy's allow-list")
    if minimum is not None:
        have, need = _version(value, base), _version(minimum, base)
        if have is None or need is None or have < need:
            refuse(index, code, f"GPU {index} {label} {value} is older than {minimum}")


def _set_error(run: GpuRun, result: GpuVerification) -> Reason | None:
    if result.error is not None:
        return Reason(result.error.code, result.error.message)
    bundle = run.bundle
    if bundle is not None and bundle.error is not None:
        return Reason(bundle.error.code, bundle.error.message)  # the set failed (coherence)
    return None


def _first_fatal(findings: list[tuple[StatusName, Reason]]) -> Reason | None:
    return next((reason for status, reason in findings if status == _FATAL), None)


def _arch(value: str | None) -> str | None:
    lowered = (value or "").lower()
    return lowered if lowered in ("hopper", "blackwell") else None


def _error(reason: Reason | None) -> dict[str, str] | None:
    return None if reason is None else {"code": reason.code, "message": reason.message}


def _unattested_claim(
    *,
    index: int,
    arch: str,
    driver: str,
    vbios: str,
    mode: str,
    simulated: bool,
    status: str,
    error: Reason | None,
) -> dict[str, Any]:
    return {
        "index": index,
        "ueid": None,
        "hwmodel": None,
        "arch": _arch(arch),
        "driver_version": driver or None,
        "vbios_version": vbios or None,
        "mode": mode,
        "status": status,
        "measurements": {"result": "not_appraised", "mismatched_indices": []},
        "rim_ids": [],
        "ocsp": "not_checked",
        "simulated": simulated,
        "error": _error(error),
    }


def _verified_claim(
    *,
    entry_index: int,
    result: GpuVerification,
    devtools: bool,
    simulated: bool,
    policy_error: Reason | None,
) -> dict[str, Any]:
    claims = result.claims
    measured = claims.measurements if claims else None
    if measured is None:
        measurements: Mapping[str, Any] = {"result": "not_appraised", "mismatched_indices": []}
    else:
        measurements = {
            "result": "matched" if measured.matched else "mismatched",
            "mismatched_indices": list(measured.mismatched_indices),
        }
    if result.error is not None and result.error.code == "gpu_cert_revoked":
        ocsp = "revoked"
    elif claims is None or claims.ocsp is None:
        ocsp = "not_checked"
    else:
        ocsp = _OCSP_CLAIM.get(claims.ocsp, "unknown")
    mode = "devtools" if devtools else _MODE_CLAIM.get((claims.mode if claims else None) or "")
    return {
        "index": entry_index,
        "ueid": claims.ueid if claims else None,
        "hwmodel": claims.hwmodel if claims else None,
        "arch": _arch(claims.arch if claims else None),
        "driver_version": claims.driver_version if claims else None,
        "vbios_version": claims.vbios_version if claims else None,
        "mode": mode,
        "status": "verified" if policy_error is None else "rejected",
        "measurements": dict(measurements),
        "rim_ids": [rim.rim_id for rim in measured.rims] if measured else [],
        "ocsp": ocsp,
        "simulated": simulated,
        "error": _error(policy_error),
    }


_T = TypeVar("_T")


def _need(value: _T | None) -> _T:
    if value is None:  # pragma: no cover - steps run in order; a missing input is a bug
        raise VerificationError("GPU step ran before its input", code="internal_error")
    return value
