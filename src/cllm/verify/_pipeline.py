"""The DCAP quote verification pipeline (docs/design.md §6).

Fail-closed: steps run in a fixed order, the first failure stops the run, and the result is
``ok`` only when every step ran and passed. The evaluation time is an argument, never read from
the clock here. Time-independent work (chain structure, CRL and collateral signatures, JSON
decoding) is cached by the bytes it was computed from; validity windows are checked every time.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from cllm.errors import CllmError, VerificationError
from cllm.quote import (
    CertificationData,
    EnclaveReport,
    PckExtensions,
    Quote,
    TdReport,
    parse_pck_chain,
    parse_pck_extensions,
    parse_quote,
)
from cllm.quote import layout as quote_layout
from cllm.verify import _tcb
from cllm.verify._collateral import (
    Collateral,
    QeIdentity,
    TcbInfo,
    parse_qe_identity,
    parse_tcb_info,
)
from cllm.verify._pki import (
    ChainValidator,
    Dated,
    ParsedCrl,
    SignatureMemo,
    VerifiedChain,
    certificate_p256_key,
    check_pem_chain_size,
    check_validity,
    ecdsa_p256_verify,
    p256_point,
    p256_public_key,
    parse_crl,
)
from cllm.verify._result import Step, TdFacts, VerificationResult
from cllm.verify._roots import TrustRoot
from cllm.verify._status import TcbStatus

__all__ = ["DEFAULT_BUDGET_S", "QuoteVerifier"]

# A genuine verification takes about a millisecond uncached; no input makes one take more than a
# few (see docs/benchmarks.md). The budget is far above both, so only a machine in trouble or a
# defect meets it.
DEFAULT_BUDGET_S: Final = 2.0

_log = logging.getLogger(__name__)

_TCB_INFO_ID = {True: "TDX", False: "SGX"}
_QE_IDENTITY_ID = {True: "TD_QE", False: "QE"}


@dataclass(frozen=True, slots=True)
class _PckChain:
    chain: VerifiedChain
    extensions: PckExtensions
    key: ec.EllipticCurvePublicKey  # the PCK leaf's key, which signs the QE report
    key_point: bytes  # that key's exact bytes (SEC1 point)


@dataclass(slots=True)
class _Run:
    """Mutable state of one verification run, filled step by step."""

    quote_input: bytes | Quote
    collateral: Collateral
    at: int
    quote: Quote = field(init=False)
    tcb_info: TcbInfo = field(init=False)
    qe_identity: QeIdentity = field(init=False)
    root_crl: ParsedCrl = field(init=False)
    pck_crl: ParsedCrl = field(init=False)
    pck: _PckChain = field(init=False)
    dated: list[Dated] = field(default_factory=list)
    platform: _tcb.PlatformMatch = field(init=False)
    module: _tcb.ModuleMatch | None = None  # TDX quotes only
    qe: _tcb.LevelMatch = field(init=False)
    status: TcbStatus | None = None
    advisory_ids: tuple[str, ...] = ()


def _timestamp(at: int | datetime) -> int:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("evaluation time must be timezone-aware")
        return int(at.timestamp())
    if isinstance(at, bool) or not isinstance(at, int):
        raise TypeError("evaluation time must be unix seconds (int) or an aware datetime")
    return at


class QuoteVerifier:
    """Verifies DCAP quotes against collateral under one pinned trust root.

    One instance is meant to be long-lived: it caches validated chains and decoded collateral,
    keyed by their bytes, so repeated verifications cost little more than two ECDSA checks.
    """

    def __init__(
        self,
        *,
        trust_root: TrustRoot,
        cache_size: int = 256,
        budget_s: float = DEFAULT_BUDGET_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not budget_s > 0:
            raise ValueError("budget_s must be positive")
        self._root = trust_root
        self._budget_s = budget_s
        self._monotonic = monotonic
        self._chains = ChainValidator(trust_root, cache_size=cache_size)
        cached = functools.lru_cache(maxsize=cache_size)
        self._pck_chain = cached(self._pck_chain_uncached)
        self._signature_ok = cached(self._signature_ok_uncached)
        self._crl_issued_by = cached(ParsedCrl.check_issued_by)
        self._tcb_info = cached(parse_tcb_info)
        self._qe_identity = cached(parse_qe_identity)
        # Every quote from one platform carries the same QE report, signed by the same PCK key:
        # verified once per exact (key, signature, report). The quote's own signature, over
        # bytes that differ in every quote, is always verified.
        self._qe_report_signatures = SignatureMemo(maxsize=cache_size)
        self._attestation_key = cached(p256_public_key)  # the 64 bytes -> the key (or None)
        self._steps: tuple[tuple[str, Callable[[_Run], None]], ...] = (
            ("parse_quote", self._step_parse_quote),
            ("parse_collateral", self._step_parse_collateral),
            ("pck_chain", self._step_pck_chain),
            ("revocation", self._step_revocation),
            ("tcb_info", self._step_tcb_info),
            ("qe_identity", self._step_qe_identity),
            ("qe_report_signature", self._step_qe_report_signature),
            ("qe_report_data", self._step_qe_report_data),
            ("quote_signature", self._step_quote_signature),
            ("qe_vendor", self._step_qe_vendor),
            ("platform_identity", self._step_platform_identity),
            ("tcb_level", self._step_tcb_level),
            ("tdx_module", self._step_tdx_module),
            ("qe_identity_tcb", self._step_qe_identity_tcb),
            ("tcb_status", self._step_tcb_status),
        )

    @property
    def trust_root(self) -> TrustRoot:
        return self._root

    @property
    def budget_s(self) -> float:
        return self._budget_s

    def verify(
        self,
        quote: bytes | Quote,
        collateral: Collateral,
        *,
        at: int | datetime,
        deadline: float | None = None,
    ) -> VerificationResult:
        """Run every step; ``deadline`` (on this verifier's monotonic clock) defaults to now
        plus the verifier's budget. Each step is bounded by the size of its input (fixed-shape
        chains, no search); the deadline is checked before every step, so a run that is
        slowed down anyway (a loaded machine, a step that misbehaves) stops at the next step
        boundary with ``appraisal_timeout``."""
        if deadline is None:
            deadline = self._monotonic() + self._budget_s
        run = _Run(quote_input=quote, collateral=collateral, at=_timestamp(at))
        steps: list[Step] = []
        error: CllmError | None = None
        for number, (name, step) in enumerate(self._steps, start=1):
            try:
                if self._monotonic() > deadline:
                    raise VerificationError(
                        f"verification ran out of its time budget before step {name}",
                        code="appraisal_timeout",
                    )
                step(run)
            except CllmError as exc:
                error = exc
            except Exception as exc:  # fail closed on anything unforeseen, and say so
                _log.exception("verification step %s failed unexpectedly", name)
                error = VerificationError(
                    f"unexpected {type(exc).__name__} in step {name}", code="internal_error"
                )
            if error is not None:
                steps.append(Step(number, name, False, error.code, error.message))
                break
            steps.append(Step(number, name, True))
        return self._result(run, tuple(steps), error)

    def _result(
        self, run: _Run, steps: tuple[Step, ...], error: CllmError | None
    ) -> VerificationResult:
        quote = getattr(run, "quote", None)
        td = enclave_debug = None
        if quote is not None and isinstance(quote.body, TdReport):
            body = quote.body
            td = TdFacts(body.debug, body.sept_ve_disable, body.mr_servicetd_zero)
        elif quote is not None and isinstance(quote.body, EnclaveReport):
            enclave_debug = quote.body.debug
        pck: _PckChain | None = getattr(run, "pck", None)
        platform: _tcb.PlatformMatch | None = getattr(run, "platform", None)
        qe: _tcb.LevelMatch | None = getattr(run, "qe", None)
        return VerificationResult(
            ok=error is None,
            steps=steps,
            error=error,
            evaluated_at=run.at,
            trust_root=self._root.name,
            quote=quote,
            tcb_status=run.status,
            advisory_ids=run.advisory_ids,
            platform_tcb_status=platform.level.status if platform else None,
            tdx_module_tcb_status=(
                run.module.level.status if run.module and run.module.level else None
            ),
            qe_tcb_status=qe.status if qe else None,
            collateral_expires=(
                min(item.not_after for item in run.dated) if error is None else None
            ),
            fmspc=pck.extensions.fmspc.hex().upper() if pck else None,
            td=td,
            enclave_debug=enclave_debug,
            tcb_evaluation_data_number=(
                min(
                    run.tcb_info.tcb_evaluation_data_number,
                    run.qe_identity.tcb_evaluation_data_number,
                )
                if error is None
                else None
            ),
            collateral_issued=(
                min(
                    run.tcb_info.validity[0],
                    run.qe_identity.validity[0],
                    run.pck_crl.validity.not_before,
                )
                if error is None
                else None
            ),
        )

    # -- steps ---------------------------------------------------------------------------

    def _step_parse_quote(self, run: _Run) -> None:
        quote_input = run.quote_input
        run.quote = quote_input if isinstance(quote_input, Quote) else parse_quote(quote_input)

    def _step_parse_collateral(self, run: _Run) -> None:
        c = run.collateral
        run.tcb_info = self._tcb_info(c.tcb_info)
        run.qe_identity = self._qe_identity(c.qe_identity)
        run.root_crl = parse_crl(c.root_ca_crl, "root CA CRL")
        run.pck_crl = parse_crl(c.pck_crl, "PCK CRL")

    def _pck_chain_uncached(self, certification: CertificationData) -> _PckChain:
        if certification.type == quote_layout.CERT_PCK_CHAIN:
            check_pem_chain_size(certification.data, what="PCK chain")
        certs = tuple(parse_pck_chain(certification))
        chain = self._chains.pck_chain(certs, what="PCK chain")
        key = certificate_p256_key(chain.leaf, "PCK certificate")
        return _PckChain(
            chain=chain,
            extensions=parse_pck_extensions(chain.leaf),
            key=key,
            key_point=p256_point(key),
        )

    @staticmethod
    def _dated_chain(chain: VerifiedChain, run: _Run) -> VerifiedChain:
        check_validity(chain.validity, run.at)
        run.dated.extend(chain.validity)
        return chain

    def _step_pck_chain(self, run: _Run) -> None:
        run.pck = self._pck_chain(run.quote.signature_data.certification)
        check_validity(run.pck.chain.validity, run.at)
        run.dated.extend(run.pck.chain.validity)
        expected = run.collateral.pck_certificate_chain
        if expected is not None:
            listed = self._dated_chain(
                self._chains.pck_chain_pem(expected, what="collateral PCK chain"), run
            )
            if listed.certificates != run.pck.chain.certificates:
                raise VerificationError(
                    "collateral's PCK certificate chain differs from the quote's",
                    code="collateral_mismatch",
                )

    def _step_revocation(self, run: _Run) -> None:
        root_cert = self._root.certificate
        self._crl_issued_by(run.root_crl, root_cert, "root CA CRL")
        pck_ca = run.pck.chain.issuer
        self._crl_issued_by(run.pck_crl, pck_ca, "PCK CRL")
        check_validity((run.root_crl.validity, run.pck_crl.validity), run.at)
        run.dated += [run.root_crl.validity, run.pck_crl.validity]
        what = "PCK CRL issuer chain"
        crl_chain = self._dated_chain(
            self._chains.crl_issuer_chain_pem(run.collateral.pck_crl_issuer_chain, what=what),
            run,
        )
        # The CRL chain must be that of the CA of the PCK chain in use (Platform CA CRL for a
        # Platform CA chain, Processor for Processor), not just any CA under the root.
        if not _same_ca(crl_chain.leaf, pck_ca):
            raise VerificationError(
                f"{what} names '{crl_chain.leaf.subject.rfc4514_string()}', not the PCK "
                f"chain's CA '{pck_ca.subject.rfc4514_string()}'",
                code="crl_invalid",
            )
        run.pck_crl.check_not_revoked(run.pck.chain.leaf, "PCK certificate")
        for ca in (*run.pck.chain.certificates[1:-1], *crl_chain.certificates[:-1]):
            run.root_crl.check_not_revoked(ca, "CA certificate")

    def _signature_ok_uncached(
        self, signer: x509.Certificate, signature: bytes, data: bytes
    ) -> bool:
        key = certificate_p256_key(signer, "collateral signing certificate")
        return ecdsa_p256_verify(key, signature, data)

    def _signed_document(
        self,
        run: _Run,
        *,
        what: str,
        issuer_chain: str,
        body: bytes,
        signature: bytes,
        validity: tuple[int, int],
        document_id: str,
        expected_id: str,
    ) -> None:
        """Issuer chain, signature over the exact bytes, validity window and TEE of an Intel
        collateral document (TCB info or QE identity)."""
        chain = self._dated_chain(self._chains.signing_chain_pem(issuer_chain), run)
        for cert in chain.certificates[:-1]:
            run.root_crl.check_not_revoked(cert, f"{what} signing certificate")
        if not self._signature_ok(chain.leaf, signature, body):
            raise VerificationError(
                f"{what} signature is invalid", code=f"{_code(what)}_signature_invalid"
            )
        dated = Dated(what=what, not_before=validity[0], not_after=validity[1])
        check_validity((dated,), run.at)
        run.dated.append(dated)
        if document_id != expected_id:
            raise VerificationError(
                f"{what} is for {document_id}, the quote needs {expected_id}",
                code="collateral_mismatch",
            )

    def _step_tcb_info(self, run: _Run) -> None:
        c = run.collateral
        self._signed_document(
            run,
            what="TCB info",
            issuer_chain=c.tcb_info_issuer_chain,
            body=c.tcb_info,
            signature=c.tcb_info_signature,
            validity=run.tcb_info.validity,
            document_id=run.tcb_info.id,
            expected_id=_TCB_INFO_ID[run.quote.is_tdx],
        )

    def _step_qe_identity(self, run: _Run) -> None:
        c = run.collateral
        self._signed_document(
            run,
            what="QE identity",
            issuer_chain=c.qe_identity_issuer_chain,
            body=c.qe_identity,
            signature=c.qe_identity_signature,
            validity=run.qe_identity.validity,
            document_id=run.qe_identity.id,
            expected_id=_QE_IDENTITY_ID[run.quote.is_tdx],
        )

    def _step_qe_report_signature(self, run: _Run) -> None:
        sig = run.quote.signature_data
        if not self._qe_report_signatures.verify(
            run.pck.key, run.pck.key_point, sig.qe_report_signature, sig.qe_report.raw
        ):
            raise VerificationError(
                "QE report signature does not verify with the PCK key",
                code="qe_report_signature_invalid",
            )

    def _step_qe_report_data(self, run: _Run) -> None:
        sig = run.quote.signature_data
        expected = hashlib.sha256(sig.attestation_key + sig.qe_auth_data).digest() + bytes(32)
        if sig.qe_report.report_data != expected:
            raise VerificationError(
                "QE report data is not SHA-256(attestation key || QE authentication data)",
                code="qe_report_data_mismatch",
            )

    def _step_quote_signature(self, run: _Run) -> None:
        sig = run.quote.signature_data
        key = self._attestation_key(sig.attestation_key)
        if key is None:
            raise VerificationError(
                "attestation key is not a point on P-256", code="attestation_key_invalid"
            )
        if not ecdsa_p256_verify(key, sig.signature, run.quote.signed_data):
            raise VerificationError(
                "quote signature does not verify with the attestation key",
                code="quote_signature_invalid",
            )

    def _step_qe_vendor(self, run: _Run) -> None:
        vendor = run.quote.header.qe_vendor_id
        if vendor != self._root.qe_vendor_id and not self._root.allow_any_qe_vendor:
            raise VerificationError(
                f"QE vendor ID {vendor.hex()} is not the one {self._root.name} requires",
                code="qe_vendor_mismatch",
            )

    def _step_platform_identity(self, run: _Run) -> None:
        ext = run.pck.extensions
        info = run.tcb_info
        if ext.fmspc != bytes.fromhex(info.fmspc):
            raise VerificationError(
                f"PCK FMSPC {ext.fmspc.hex().upper()} does not match TCB info FMSPC {info.fmspc}",
                code="fmspc_mismatch",
            )
        if ext.pce_id != bytes.fromhex(info.pce_id):
            raise VerificationError(
                f"PCK PCE-ID {ext.pce_id.hex()} does not match TCB info PCE-ID {info.pce_id}",
                code="pce_id_mismatch",
            )

    def _step_tcb_level(self, run: _Run) -> None:
        run.platform = _tcb.match_platform(run.tcb_info, run.pck.extensions, run.quote.body)

    def _step_tdx_module(self, run: _Run) -> None:
        if isinstance(run.quote.body, TdReport):
            run.module = _tcb.match_tdx_module(run.tcb_info, run.quote.body)

    def _step_qe_identity_tcb(self, run: _Run) -> None:
        run.qe = _tcb.match_qe_identity(run.qe_identity, run.quote.signature_data.qe_report)

    def _step_tcb_status(self, run: _Run) -> None:
        run.status, run.advisory_ids = _tcb.combine(
            tcb_info=run.tcb_info,
            body=run.quote.body,
            platform=run.platform,
            module=run.module,
            qe=run.qe,
        )
        if run.status is TcbStatus.REVOKED:
            raise VerificationError("the platform's TCB is revoked", code="tcb_revoked")


@functools.lru_cache(maxsize=64)
def _same_ca(a: x509.Certificate, b: x509.Certificate) -> bool:
    """Same subject and same key (a CA certificate may be reissued with new dates)."""
    if a == b:
        return True
    key_a = certificate_p256_key(a, "CA certificate")
    key_b = certificate_p256_key(b, "CA certificate")
    return a.subject == b.subject and p256_point(key_a) == p256_point(key_b)


def _code(what: str) -> str:
    return what.lower().replace(" ", "_")
