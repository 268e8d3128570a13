"""From evidence to a verdict: evidence checks, DCAP, policy, and the cap on simulated evidence.

A verdict always exists: a failure anywhere is a ``contraindicated`` status with reasons, never
an exception, so the service signs it like any other (docs/design.md §8).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from cllm.appraisal._collateral_source import CollateralSource
from cllm.appraisal._freshness import collateral_findings, freshest
from cllm.appraisal._gpu import GpuAppraiser, GpuOutcome, GpuTrust
from cllm.appraisal._reuse import DcapReuse
from cllm.errors import CllmError
from cllm.evidence import Evidence, check_evidence, parse_evidence
from cllm.policy import (
    Appraisal,
    ComponentFact,
    Facts,
    Policy,
    Reason,
    Status,
    appraise,
    where_prompts_go,
)
from cllm.quote import Quote
from cllm.verify import Collateral, QuoteVerifier, VerificationResult

__all__ = ["EvidenceAppraiser", "Verdict"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    reasons: tuple[Reason, ...]
    claims: Mapping[str, Any]  # token claims without iss/iat/exp/jti


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


@functools.lru_cache(maxsize=_COLLATERAL_MEMO_ENTRIES)
def _collateral_memo(pairs: tuple[tuple[str, str | None], ...]) -> Collateral:
    return Collateral.from_json_dict(dict(pairs))


def carried_collateral(document: Mapping[str, Any]) -> Collateral:
    """``Collateral.from_json_dict`` of the evidence's collateral object, memoised."""
    pairs = _exact_strings(document)
    if pairs is None:
        return Collateral.from_json_dict(dict(document))
    return _collateral_memo(pairs)


def _contraindicated(code: str, message: str) -> Appraisal:
    return Appraisal(status="contraindicated", reasons=(Reason(code, message),))


class EvidenceAppraiser:
    """Verifies evidence against one trust configuration and appraises it with a policy."""

    def __init__(
        self,
        *,
        intel: QuoteVerifier,
        simulated: QuoteVerifier | None,
        collateral: CollateralSource,
        gpu: GpuTrust | None = None,
    ) -> None:
        self._intel = intel
        self._gpu = GpuAppraiser(gpu)  # GPU steps (cllm.appraisal._gpu); simulated GPUs: opt-in
        self._simulated = simulated  # only with --trust-simulated-root
        self._collateral = collateral
        self._dcap = DcapReuse()  # one batch's clients share a quote: its DCAP work once

    def appraise(
        self, document: Mapping[str, Any], *, nonce: bytes, policy: Policy, at: int
    ) -> Verdict:
        claims = _base_claims(nonce=nonce, policy=policy)
        try:
            appraisal = self._appraise(document, nonce=nonce, policy=policy, at=at, claims=claims)
        except Exception as exc:  # a defect must still give a verdict, never a 500
            _log.exception("appraisal failed unexpectedly")
            claims = _base_claims(nonce=nonce, policy=policy)
            appraisal = _contraindicated(
                "internal_error", f"unexpected {type(exc).__name__} during appraisal"
            )
        claims["reference"] = dict(appraisal.reference) or None
        if claims["simulated"] and appraisal.status != "contraindicated":
            # Simulated evidence is trusted only because the operator said so: never affirming,
            # and always said.
            appraisal = Appraisal(
                status="warning",
                reasons=(
                    *appraisal.reasons,
                    Reason("simulated_evidence", "evidence comes from a simulated TD"),
                ),
            )
        return Verdict(status=appraisal.status, reasons=appraisal.reasons, claims=claims)

    @staticmethod
    def refused(code: str, message: str, *, nonce: bytes, policy: Policy) -> Verdict:
        """A ``contraindicated`` verdict that names no evidence (appraisal did not finish)."""
        return Verdict(
            status="contraindicated",
            reasons=(Reason(code, message),),
            claims=_base_claims(nonce=nonce, policy=policy),
        )

    def _appraise(
        self,
        document: Mapping[str, Any],
        *,
        nonce: bytes,
        policy: Policy,
        at: int,
        claims: dict[str, Any],
    ) -> Appraisal:
        try:
            evidence = parse_evidence(document)
        except CllmError as exc:
            return _contraindicated(exc.code, exc.message)
        claims["tee"] = evidence.tee
        claims["simulated"] = evidence.tee == "simulated-tdx"
        claims["keys"] = evidence.binding.to_json()
        check = check_evidence(evidence, expected_nonce=nonce)
        if check.quote is not None:
            claims["td"] = _td_claims(check.quote)
        claims["components"] = [
            {"type": event.type, "name": event.name, "digest": event.digest.hex()}
            for event in check.events
        ]
        component_facts = tuple(
            ComponentFact(event.type, event.name, event.digest.hex(), event.details)
            for event in check.events
        )
        claims["upstream"] = where_prompts_go(component_facts)
        gpu = self._gpu.appraise(evidence, policy=policy, at=at)
        claims["gpus"] = list(gpu.gpus)
        # Every check that can run does, so the reasons name all findings (a real quote with a
        # foreign binding still reports its TCB).
        reasons: list[Reason] = []
        if check.error is not None:
            reasons.append(Reason(check.error.code, check.error.message))
        reasons += [reason for status, reason in gpu.findings if status == "contraindicated"]
        if check.quote is None:
            return Appraisal(status="contraindicated", reasons=tuple(reasons))
        verifier = self._simulated if claims["simulated"] else self._intel
        if verifier is None:
            reasons.append(
                Reason(
                    "simulated_not_trusted",
                    "simulated evidence, and this verifier was not started with "
                    "--trust-simulated-root",
                )
            )
            return Appraisal(status="contraindicated", reasons=tuple(reasons))
        try:
            collateral = self._collateral_for(
                evidence, check.quote, simulated=bool(claims["simulated"])
            )
        except CllmError as exc:
            reasons.append(Reason(exc.code, exc.message))
            return Appraisal(status="contraindicated", reasons=tuple(reasons))
        result = self._dcap.verify(
            verifier, quote_bytes=evidence.quote, quote=check.quote, collateral=collateral, at=at
        )
        claims["tcb"] = _tcb_claims(result)
        tcb_status, td_facts = result.tcb_status, result.td
        if not result.ok or tcb_status is None or td_facts is None:
            error = result.error
            reasons.append(
                Reason(
                    error.code if error else "verification_failed",
                    error.message if error else "quote did not verify",
                )
            )
        reasons += collateral_findings(
            result, policy=policy, at=at, hardware=not claims["simulated"]
        )
        if reasons or tcb_status is None or td_facts is None:
            return Appraisal(status="contraindicated", reasons=tuple(reasons))
        body = check.quote.td_report
        facts = Facts(
            tcb_status=tcb_status,
            debug=td_facts.debug,
            sept_ve_disable=td_facts.sept_ve_disable,
            mrtd=body.mrtd.hex(),
            rtmrs=(body.rtmr0.hex(), body.rtmr1.hex(), body.rtmr2.hex(), body.rtmr3.hex()),
            components=component_facts,
            td_attributes=int.from_bytes(body.td_attributes, "little"),
            xfam=body.xfam.hex(),
            mrconfigid=body.mr_config_id.hex(),
            mrowner=body.mr_owner.hex(),
            mrownerconfig=body.mr_owner_config.hex(),
            mrservicetd=body.mr_servicetd.hex() if body.mr_servicetd is not None else None,
        )
        return _with_gpu_warnings(appraise(policy, facts), gpu)

    def _collateral_for(self, evidence: Evidence, quote: Quote, *, simulated: bool) -> Collateral:
        if evidence.collateral is not None:
            # Carried collateral is checked like any other, and never wins over newer
            # collateral of the verifier's own (see _freshness).
            carried = carried_collateral(evidence.collateral)
            own = self._collateral.own_for(quote, may_fetch=not simulated)
            return carried if own is None else freshest(carried=carried, own=own)
        return self._collateral.for_quote(quote)


def _with_gpu_warnings(appraisal: Appraisal, gpu: GpuOutcome) -> Appraisal:
    """The GPU steps' warnings (unattested GPUs, a simulated GPU) join the policy's findings."""
    warnings = tuple(reason for status, reason in gpu.findings if status == "warning")
    if not warnings:
        return appraisal
    status: Status = "contraindicated" if appraisal.status == "contraindicated" else "warning"
    return replace(appraisal, status=status, reasons=(*appraisal.reasons, *warnings))


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
