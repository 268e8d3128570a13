"""The verification result: one named entry per pipeline step, plus the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cllm.errors import CllmError, CollateralFormatError, QuoteFormatError
from cllm.quote import Quote
from cllm.verify._status import TcbStatus

__all__ = ["Step", "TdFacts", "VerificationResult"]


@dataclass(frozen=True, slots=True)
class Step:
    number: int
    name: str
    ok: bool
    code: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"number": self.number, "name": self.name, "ok": self.ok}
        if not self.ok:
            doc["code"] = self.code
            doc["message"] = self.message
        return doc


@dataclass(frozen=True, slots=True)
class TdFacts:
    """Facts about the TD for policy to judge; never verification failures by themselves."""

    debug: bool
    sept_ve_disable: bool
    mr_servicetd_zero: bool


@dataclass(frozen=True, slots=True)
class VerificationResult:
    """Outcome of the DCAP pipeline.

    ``ok`` means: authentic, every collateral item valid at ``evaluated_at``, a TCB level
    matched, and the combined status is not Revoked. Whether the status is *acceptable* is a
    policy decision made elsewhere.
    """

    ok: bool
    steps: tuple[Step, ...]
    error: CllmError | None
    evaluated_at: int
    trust_root: str
    quote: Quote | None = None
    tcb_status: TcbStatus | None = None
    advisory_ids: tuple[str, ...] = ()
    platform_tcb_status: TcbStatus | None = None
    tdx_module_tcb_status: TcbStatus | None = None
    qe_tcb_status: TcbStatus | None = None
    collateral_expires: int | None = None
    fmspc: str | None = None
    td: TdFacts | None = None
    enclave_debug: bool | None = None
    # The collateral the verdict rests on (set when ok): the lower tcbEvaluationDataNumber of
    # TCB info and QE identity, and the oldest issue time (unix seconds) of TCB info, QE
    # identity and PCK CRL (the root CA CRL is reissued about yearly and is not counted).
    tcb_evaluation_data_number: int | None = None
    collateral_issued: int | None = None

    @property
    def input_unusable(self) -> bool:
        """The quote or collateral could not be decoded at all (CLI exit code 2)."""
        return isinstance(self.error, QuoteFormatError | CollateralFormatError)

    def to_dict(self) -> dict[str, Any]:
        """The ``cllm quote verify --json`` contract."""
        td = self.td
        return {
            "ok": self.ok,
            "tcb_status": self.tcb_status.value if self.tcb_status else None,
            "advisory_ids": list(self.advisory_ids),
            "error": (
                {"code": self.error.code, "message": self.error.message} if self.error else None
            ),
            "steps": [step.to_dict() for step in self.steps],
            "td": (
                {
                    "debug": td.debug,
                    "sept_ve_disable": td.sept_ve_disable,
                    "mr_servicetd_zero": td.mr_servicetd_zero,
                }
                if td
                else None
            ),
            "collateral_expires": self.collateral_expires,
            "fmspc": self.fmspc,
            "platform_tcb_status": _value(self.platform_tcb_status),
            "tdx_module_tcb_status": _value(self.tdx_module_tcb_status),
            "qe_tcb_status": _value(self.qe_tcb_status),
            "enclave_debug": self.enclave_debug,
            "evaluated_at": self.evaluated_at,
            "trust_root": self.trust_root,
        }


def _value(status: TcbStatus | None) -> str | None:
    return status.value if status else None
