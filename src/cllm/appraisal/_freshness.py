"""Collateral freshness: carried collateral never rolls the verifier back, and policy bounds.

Evidence may carry its collateral, chosen by whoever sends the evidence. Every carried piece is
Intel-signed (the pipeline checks that), but an older signed piece is still valid for weeks: a
PCK CRL from before a revocation, TCB info from before a TCB recovery. So the verifier compares
each carried piece with its own newest one for the quote's (TEE, FMSPC, PCK CA) and uses the
carried piece only when it is at least as new:

* TCB info and QE identity, as one pair (never mixed across evaluation data numbers): carried
  only when both carried documents are at least as new as the verifier's by
  (tcbEvaluationDataNumber, issueDate) and describe the same platform (TEE, FMSPC);
* PCK CRL with its issuer chain, and the root CA CRL: carried only when issued by the same CA
  and at least as new by (CRL number, thisUpdate).

The policy then bounds what is left: ``[tcb] min_tcb_evaluation_data_number`` and (hardware
evidence) ``[freshness] max_collateral_age``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Final

from cryptography import x509

from cllm.errors import X509_DECODE_ERRORS
from cllm.policy import Policy, Reason
from cllm.verify import Collateral, VerificationResult, parse_crl, parse_qe_identity, parse_tcb_info

__all__ = ["collateral_findings", "freshest"]

_KEY_CACHE: Final = 64


@functools.lru_cache(maxsize=_KEY_CACHE)
def _tcb_info_key(raw: bytes) -> tuple[tuple[str, str], tuple[int, int]]:
    info = parse_tcb_info(raw)
    platform = (info.id, info.fmspc.upper())
    return platform, (info.tcb_evaluation_data_number, info.validity[0])


@functools.lru_cache(maxsize=_KEY_CACHE)
def _qe_identity_key(raw: bytes) -> tuple[str, tuple[int, int]]:
    identity = parse_qe_identity(raw)
    return identity.id, (identity.tcb_evaluation_data_number, identity.validity[0])


@functools.lru_cache(maxsize=_KEY_CACHE)
def _crl_key(der: bytes, what: str) -> tuple[x509.Name, tuple[int, int]]:
    parsed = parse_crl(der, what)
    try:
        number = parsed.crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = 0
    except X509_DECODE_ERRORS:
        number = -1  # a malformed number never makes a CRL newer
    return parsed.issuer, (number, parsed.validity.not_before)


def freshest(*, carried: Collateral, own: Collateral) -> Collateral:
    """The carried set with every piece that is older than the verifier's own replaced by it.

    Carried pieces that cannot be decoded raise their ``CollateralFormatError``: the evidence
    is then judged unusable, as it would be without a collateral of the verifier's own.
    """
    chosen = carried
    c_platform, c_info = _tcb_info_key(carried.tcb_info)
    o_platform, o_info = _tcb_info_key(own.tcb_info)
    c_qe_id, c_qe = _qe_identity_key(carried.qe_identity)
    o_qe_id, o_qe = _qe_identity_key(own.qe_identity)
    if not (c_platform == o_platform and c_qe_id == o_qe_id and c_info >= o_info and c_qe >= o_qe):
        chosen = dataclasses.replace(
            chosen,
            tcb_info=own.tcb_info,
            tcb_info_signature=own.tcb_info_signature,
            tcb_info_issuer_chain=own.tcb_info_issuer_chain,
            qe_identity=own.qe_identity,
            qe_identity_signature=own.qe_identity_signature,
            qe_identity_issuer_chain=own.qe_identity_issuer_chain,
        )
    c_issuer, c_pck = _crl_key(carried.pck_crl, "PCK CRL")
    o_issuer, o_pck = _crl_key(own.pck_crl, "PCK CRL")
    if c_issuer != o_issuer or c_pck < o_pck:
        chosen = dataclasses.replace(
            chosen, pck_crl=own.pck_crl, pck_crl_issuer_chain=own.pck_crl_issuer_chain
        )
    c_issuer, c_root = _crl_key(carried.root_ca_crl, "root CA CRL")
    o_issuer, o_root = _crl_key(own.root_ca_crl, "root CA CRL")
    if c_issuer != o_issuer or c_root < o_root:
        chosen = dataclasses.replace(chosen, root_ca_crl=own.root_ca_crl)
    return chosen


def collateral_findings(
    result: VerificationResult, *, policy: Policy, at: int, hardware: bool
) -> list[Reason]:
    """What the policy says about the collateral a verified quote was judged with."""
    reasons: list[Reason] = []
    minimum = policy.min_tcb_evaluation_data_number
    number = result.tcb_evaluation_data_number
    if number is not None and number < minimum:
        reasons.append(
            Reason(
                "tcb_evaluation_data_number_too_low",
                f"the collateral is of TCB evaluation {number}; the policy requires at least "
                f"{minimum}",
            )
        )
    issued = result.collateral_issued
    # A simulated world issues its collateral once, when it is created: only hardware
    # evidence has Intel's (re)issuing schedule to be held to.
    if hardware and issued is not None and at - issued > policy.max_collateral_age:
        reasons.append(
            Reason(
                "collateral_too_old",
                f"the collateral was issued {(at - issued) // 3600} h ago; the policy allows "
                f"{policy.max_collateral_age // 3600} h",
            )
        )
    return reasons
