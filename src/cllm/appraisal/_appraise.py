"""From evidence to a verdict: one numbered, fail-closed step table (docs/design.md, "The
appraisal steps"), shared by the verifier service, the SDK's ``LocalVerifier`` and
``cllm evidence check``.

A verdict always exists: a failure anywhere is a ``contraindicated`` status with reasons, never
an exception, so the service signs it like any other (docs/design.md §8). Every check that can
run does, so the reasons name all findings (a real quote with a foreign binding still reports
its TCB); a step that needs what an earlier one could not give stops the run there. The status
is ``contraindicated`` unless the policy step ran and judged otherwise: nothing that was skipped
can make a verdict better.

Adding a step is one entry in ``EvidenceAppraiser._steps`` and one ``_step_*`` method that reads
and fills the run (``_Run``) and records findings with ``run.find``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from cllm.appraisal._collateral_source import CollateralSource
from cllm.appraisal._freshness import collateral_findings, freshest
from cllm.appraisal._gpu import GpuAppraiser, GpuRun, GpuTrust
from cllm.appraisal._reuse import DcapReuse
from cllm.errors import CllmError
from cllm.evidence import Evidence, EvidenceCheck, check_evidence, parse_evidence
from cllm.policy import (
    Appraisal,
    ComponentFact,
    Facts,
    Policy,
    Reason,
    Status,
    StatusName,
    appraise,
    where_prompts_go,
)
from cllm.quote import Quote
from cllm.verify import Collateral, QuoteVerifier, VerificationResult

if TYPE_CHECKING:
    from cllm.appraisal._trust import Trust

__all__ = ["AppraisalStep", "EvidenceAppraiser", "Verdict"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AppraisalStep:
    """One step of one appraisal: ``ran`` is False for a step an earlier stop skipped;
    ``codes`` are the reasons it found (empty: it passed)."""

    number: int
    name: str
    ran: bool
    codes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "ran": self.ran,
            "codes": list(self.codes),
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    reasons: tuple[Reason, ...]
    claims: Mapping[str, Any]  # token claims without iss/iat/exp/jti (see cllm.appraisal.Claims)
    steps: tuple[AppraisalStep, ...] = ()
    # What the evidence and DCAP steps saw, for reports (``cllm evidence check``); not claims.
    evidence_check: EvidenceCheck | None = field(default=None, compare=False)
    dcap: VerificationResult | None = field(default=None, compare=False)

    def token_claims(self) -> dict[str, Any]:
        """The claims a token carries for this verdict (without iss/iat/exp/jti), in the
        token's order and with plain JSON values (``cllm.appraisal.TokenClaims``)."""
        return {
            **self.claims,
            "status": Status(self.status).value,
            "reasons": [reason.to_json() for reason in self.reasons],
        }


# Evidence from one platform carries the same collateral until Intel's next update, so the
# decoded set is memoised on the exact JSON object (all string values, compared as such).
_COLLATERAL_MEMO_ENTRIES: Final = 32
_COLLATERAL_MEMO_MAX_CHARS: Final = 128 * 1024


def _exact_strings(document: Mapping[str, Any]) -> tuple[tuple[str, str | None], ...] | None:
    """The object as (key, value) pairs when every key is a str and every value a str or
    None (then equal pairs mean an equal object, and decoding it gives equal collateral); else
    None, and the object is decoded without the memo."""
    pairs = tuple(document.items())
    size = 0
    for key, value in pairs:
        if type(key) is not str or (value is not None and type(value) is not str):
            return None
        size += len(key) + (len(value) if value is not None else 0)
    return pairs if size <= _COLLATERAL_MEMO_MAX_CHARS else None


def _decode_collateral(pairs: tuple[tuple[str, str | None], ...]) -> Collateral:
    return Collateral.from_json_dict(dict(pairs))


@dataclass(slots=True)
class _Run:
    """Mutable state of one appraisal, filled step by step."""

    document: Mapping[str, Any]
    nonce: bytes
    policy: Policy
    at: int
    claims: dict[str, Any]
    findings: list[tuple[StatusName | Status, Reason]] = field(default_factory=list)
    evidence: Evidence | None = None
    check: EvidenceCheck | None = None
    quote: Quote | None = None
    verifier: QuoteVerifier | None = None
    collateral: Collateral | None = None
    dcap: VerificationResult | None = None
    components: tuple[ComponentFact, ...] = ()
    judged: Appraisal | None = None  # the policy's appraisal, once the policy step ran
    gpu: GpuRun | None = None  # the GPU steps' state (cllm.appraisal._gpu)

    def find(self, status: StatusName | Status, code: str, message: str) -> None:
        self.findings.append((status, Reason(code, message)))

    @property
    def contraindicated(self) -> bool:
        return any(status == Status.CONTRAINDICATED for status, _ in self.findings)

    @property
    def simulated(self) -> bool:
        return bool(self.claims["simulated"])


_StepFn = Callable[[_Run], bool]  # False: stop; the steps after it cannot run


class EvidenceAppraiser:
    """Verifies evidence against one trust configuration and appraises it with a policy.

    Built by ``Trust.appraiser()`` (``cllm.appraisal.Trust``); the keyword constructor stays for
    callers that assemble the parts themselves (tests). Its memos (DCAP results of one batch,
    decoded carried collateral) belong to the instance."""

    def __init__(
        self,
        *,
        intel: QuoteVerifier,
        simulated: QuoteVerifier | None,
        collateral: CollateralSource,
        trust: Trust | None = None,
        gpu: GpuTrust | None = None,
    ) -> None:
        self._intel = intel
        self._simulated = simulated  # only with --trust-simulated-root
        self._collateral = collateral
        self.trust = trust  # the configuration it was built from (None: assembled by hand)
        self._dcap = DcapReuse()  # one batch's clients share a quote: its DCAP work once
        self._collateral_memo = functools.lru_cache(maxsize=_COLLATERAL_MEMO_ENTRIES)(
            _decode_collateral
        )
        # GPU trust: NVIDIA's roots; a simulated GPU's only when the operator trusts one.
        self._gpu = GpuAppraiser(gpu)
        # The appraisal steps, in order (docs/design.md, "The appraisal steps"). GPU steps go
        # after "dcap" and before "policy" (cllm.appraisal._gpu, docs/protocol.md).
        self._steps: tuple[tuple[str, _StepFn], ...] = (
            ("parse", self._step_parse),
            ("binding_and_logs", self._step_binding_and_logs),
            ("root", self._step_root),
            ("collateral", self._step_collateral),
            ("dcap", self._step_dcap),
            *((name, self._gpu_step(name)) for name in self._gpu.step_names),
            ("policy", self._step_policy),
            ("caps", self._step_caps),
        )

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._steps)

    def collateral_memo_info(self) -> Any:
        """``cache_info()`` of this appraiser's carried-collateral memo."""
        return self._collateral_memo.cache_info()

    def carried_collateral(self, document: Mapping[str, Any]) -> Collateral:
        """``Collateral.from_json_dict`` of the evidence's collateral object, memoised."""
        pairs = _exact_strings(document)
        if pairs is None:
            return Collateral.from_json_dict(dict(document))
        return self._collateral_memo(pairs)

    def appraise(
        self, document: Mapping[str, Any], *, nonce: bytes, policy: Policy, at: int
    ) -> Verdict:
        run = _Run(
            document=document,
            nonce=nonce,
            policy=policy,
            at=at,
            claims=_base_claims(nonce=nonce, policy=policy),
        )
        records: list[AppraisalStep] = []
        stopped = False
        for number, (name, step) in enumerate(self._steps, start=1):
            if stopped:
                records.append(AppraisalStep(number, name, ran=False))
                continue
            before = len(run.findings)
            try:
                go_on = step(run)
            except Exception as exc:  # a defect must still give a verdict, never a 500
                _log.exception("appraisal step %d %s failed unexpectedly", number, name)
                return Verdict(
                    status=Status.CONTRAINDICATED,
                    reasons=(
                        Reason(
                            "internal_error", f"unexpected {type(exc).__name__} during appraisal"
                        ),
                    ),
                    claims=_base_claims(nonce=nonce, policy=policy),
                    steps=(*records, AppraisalStep(number, name, True, ("internal_error",))),
                )
            stopped = not go_on
            if stopped and not run.contraindicated:
                # A stop always says why: a step that stops without a finding is a defect,
                # and the verdict must still not rest on the steps it skipped.
                run.find(
                    "contraindicated",
                    "appraisal_incomplete",
                    f"appraisal step {number} ({name}) stopped without a finding",
                )
            codes = tuple(reason.code for _, reason in run.findings[before:])
            records.append(AppraisalStep(number, name, True, codes))
        # Fail closed: only a run in which every step ran and the policy judged can be better
        # than contraindicated.
        status = Status.CONTRAINDICATED
        if run.judged is not None and not stopped:
            status = _worst([run.judged.status, *(level for level, _ in run.findings)])
        reference = run.judged.reference if run.judged is not None else {}
        run.claims["reference"] = dict(reference) or None
        if run.gpu is not None:  # the GPUs as far as their steps got
            run.claims["gpus"] = self._gpu.claims(run.gpu)
        return Verdict(
            status=status,
            reasons=tuple(reason for _, reason in run.findings),
            claims=run.claims,
            steps=tuple(records),
            evidence_check=run.check,
            dcap=run.dcap,
        )

    @staticmethod
    def refused(code: str, message: str, *, nonce: bytes, policy: Policy) -> Verdict:
        """A ``contraindicated`` verdict that names no evidence (appraisal did not finish)."""
        return Verdict(
            status=Status.CONTRAINDICATED,
            reasons=(Reason(code, message),),
            claims=_base_claims(nonce=nonce, policy=policy),
        )

    # -- steps ---------------------------------------------------------------------------

    def _step_parse(self, run: _Run) -> bool:
        """1. The document's shape: a typed error, never a crash (nothing to check without)."""
        try:
            run.evidence = parse_evidence(run.document)
        except CllmError as exc:
            run.find("contraindicated", exc.code, exc.message)
            return False
        run.claims["tee"] = run.evidence.tee
        run.claims["simulated"] = run.evidence.tee == "simulated-tdx"
        run.claims["keys"] = run.evidence.binding.to_json()
        return True

    def _step_binding_and_logs(self, run: _Run) -> bool:
        """2. Quote body vs TEE claim, binding and nonce (or batch proof), event log and CCEL
        replayed against the quote's registers (``check_evidence``)."""
        assert run.evidence is not None
        check = check_evidence(run.evidence, expected_nonce=run.nonce)
        run.check = check
        if check.quote is not None:
            run.claims["td"] = _td_claims(check.quote)
        run.claims["components"] = [
            {"type": event.type, "name": event.name, "digest": event.digest.hex()}
            for event in check.events
        ]
        run.components = tuple(
            ComponentFact(event.type, event.name, event.digest.hex(), event.details)
            for event in check.events
        )
        run.claims["upstream"] = where_prompts_go(run.components)
        if check.error is not None:
            run.find("contraindicated", check.error.code, check.error.message)
        run.quote = check.quote
        return check.quote is not None

    def _step_root(self, run: _Run) -> bool:
        """3. The trust root by TEE: Intel's for ``tdx``; the simulation root only when the
        operator trusts one (``Trust.with_simulated_root``)."""
        if not run.simulated:
            run.verifier = self._intel
        elif self._simulated is not None:
            run.verifier = self._simulated
        else:
            run.find(
                "contraindicated",
                "simulated_not_trusted",
                "simulated evidence, and this verifier was not started with --trust-simulated-root",
            )
            # Still checked under the only root trusted here, with the collateral it carries,
            # so the reasons also say what Intel's root makes of it (chain_untrusted).
            assert run.evidence is not None
            if run.evidence.collateral is None:
                return False
            run.verifier = self._intel
        return True

    def _step_collateral(self, run: _Run) -> bool:
        """4. Collateral: carried (never older than the verifier's own), else the verifier's
        offline set or PCCS."""
        assert run.evidence is not None
        assert run.quote is not None
        try:
            run.collateral = self._collateral_for(run.evidence, run.quote, simulated=run.simulated)
        except CllmError as exc:
            run.find("contraindicated", exc.code, exc.message)
            return False
        return True

    def _step_dcap(self, run: _Run) -> bool:
        """5. DCAP (``QuoteVerifier``, reused across one batch) and the policy's bounds on the
        collateral it was judged with."""
        assert run.evidence is not None
        assert run.quote is not None
        assert run.verifier is not None
        assert run.collateral is not None
        result = self._dcap.verify(
            run.verifier,
            quote_bytes=run.evidence.quote,
            quote=run.quote,
            collateral=run.collateral,
            at=run.at,
        )
        run.dcap = result
        run.claims["tcb"] = _tcb_claims(result)
        if not result.ok or result.tcb_status is None or result.td is None:
            error = result.error
            run.find(
                "contraindicated",
                error.code if error else "verification_failed",
                error.message if error else "quote did not verify",
            )
        for reason in collateral_findings(
            result, policy=run.policy, at=run.at, hardware=not run.simulated
        ):
            run.find("contraindicated", reason.code, reason.message)
        return True

    def _step_policy(self, run: _Run) -> bool:
        """6. The policy, on verified facts only: it runs when nothing before it
        contraindicates."""
        result = run.dcap
        if run.contraindicated or run.quote is None or result is None:
            return True
        if result.tcb_status is None or result.td is None:
            return True
        body = run.quote.td_report
        facts = Facts(
            tcb_status=result.tcb_status,
            debug=result.td.debug,
            sept_ve_disable=result.td.sept_ve_disable,
            mrtd=body.mrtd.hex(),
            rtmrs=(body.rtmr0.hex(), body.rtmr1.hex(), body.rtmr2.hex(), body.rtmr3.hex()),
            components=run.components,
            td_attributes=int.from_bytes(body.td_attributes, "little"),
            xfam=body.xfam.hex(),
            mrconfigid=body.mr_config_id.hex(),
            mrowner=body.mr_owner.hex(),
            mrownerconfig=body.mr_owner_config.hex(),
            mrservicetd=body.mr_servicetd.hex() if body.mr_servicetd is not None else None,
        )
        run.judged = appraise(run.policy, facts)
        run.findings += [(run.judged.status, reason) for reason in run.judged.reasons]
        return True

    def _gpu_step(self, name: str) -> _StepFn:
        """A GPU step (6-13): judged on the evidence's ``gpu`` field and the binding that step 2
        checked against the quote; a GPU failure contraindicates, and never stops the TD's
        findings from being reported."""

        def step(run: _Run) -> bool:
            if run.evidence is None:
                return True
            if run.gpu is None:
                run.gpu = self._gpu.start(run.evidence, policy=run.policy, at=run.at)
            before = len(run.gpu.findings)
            self._gpu.run_step(name, run.gpu)
            run.findings += run.gpu.findings[before:]
            return True

        return step

    def _step_caps(self, run: _Run) -> bool:
        """Caps: simulated evidence is trusted only because the operator said so, so it is
        never better than ``warning``, and always said (a simulated TD; a simulated GPU)."""
        if run.simulated and run.judged is not None and not run.contraindicated:
            run.find("warning", "simulated_evidence", "evidence comes from a simulated TD")
        gpu = run.gpu
        passed = run.judged is not None and not run.contraindicated
        if gpu is not None and passed and GpuAppraiser.simulated_passed(gpu):
            run.find("warning", "simulated_gpu", "GPU evidence comes from a simulated GPU")
        return True

    def _collateral_for(self, evidence: Evidence, quote: Quote, *, simulated: bool) -> Collateral:
        if evidence.collateral is not None:
            # Carried collateral is checked like any other, and never wins over newer
            # collateral of the verifier's own (see _freshness).
            carried = self.carried_collateral(evidence.collateral)
            own = self._collateral.own_for(quote, may_fetch=not simulated)
            return carried if own is None else freshest(carried=carried, own=own)
        return self._collateral.for_quote(quote)


_RANK: Final = {Status.AFFIRMING: 0, Status.WARNING: 1, Status.CONTRAINDICATED: 2}


def _worst(statuses: list[StatusName | Status]) -> Status:
    return max((Status(status) for status in statuses), key=_RANK.__getitem__)


def _base_claims(*, nonce: bytes, policy: Policy) -> dict[str, Any]:
    return {
        "nonce": nonce.hex(),
        "tee": None,
        "simulated": False,
        "tcb": None,
        "td": None,
        "components": [],
        "keys": None,
        "policy": {"id": policy.id, "sha256": policy.sha256},
        "reference": None,
        "upstream": {"scope": "unknown", "host": None},
        "gpus": [],
    }


def _td_claims(quote: Quote) -> dict[str, Any]:
    body = quote.td_report
    return {
        "mrtd": body.mrtd.hex(),
        "rtmr0": body.rtmr0.hex(),
        "rtmr1": body.rtmr1.hex(),
        "rtmr2": body.rtmr2.hex(),
        "rtmr3": body.rtmr3.hex(),
        "td_attributes": body.td_attributes.hex(),
        "xfam": body.xfam.hex(),
        "mr_seam": body.mr_seam.hex(),
        "debug": body.debug,
        "mrconfigid": body.mr_config_id.hex(),
        "mrowner": body.mr_owner.hex(),
        "mrownerconfig": body.mr_owner_config.hex(),
        "mrservicetd": body.mr_servicetd.hex() if body.mr_servicetd is not None else None,
    }


def _tcb_claims(result: VerificationResult) -> dict[str, Any]:
    return {
        "status": result.tcb_status.value if result.tcb_status else None,
        "advisory_ids": list(result.advisory_ids),
        "collateral_expires": result.collateral_expires,
    }
