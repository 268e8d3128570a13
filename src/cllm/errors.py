"""One exception tree for cllm.

Every error carries a stable, machine-readable ``code`` (snake_case) that tools, tests and the
HTTP edge match on; messages are for people and may change. Foreign exceptions are translated
into this tree at one boundary, always with ``raise ... from exc``. Every code is listed, with
its meaning, in docs/errors.md (a test checks that each code raised in ``src/`` is documented)::

    CllmError                       cllm_error
    ├── QuoteFormatError            quote_format, quote_* (offset of the failure)
    ├── CollateralError             collateral_error
    │   ├── CollateralFormatError   collateral_format, collateral_malformed, ...
    │   └── CollateralFetchError    collateral_fetch
    ├── EventLogError               eventlog_malformed, eventlog_*, event_*
    ├── MeasurementError            measurement_failed, file_*, record_*, ...
    ├── TeeError                    tee_error, tsm_*, rtmr_*
    ├── EvidenceError               evidence_invalid, evidence_malformed, binding_mismatch, ...
    ├── PolicyError                 policy_invalid
    ├── VerificationError           verification_failed, one code per failed DCAP check
    ├── AttestationError            attestation_failed (client refused; carries the verification)
    ├── ApiError                    api_error (HTTP status and the API's error code)
    ├── CryptoError                 crypto_error (sealed message or answer signature)
    ├── EngineError                 engine_error, engine_*, model_*, upstream_*
    ├── ServerError                 server_error (cllm serve cannot start as configured)
    └── GpuError                    gpu_error, gpu_unavailable, gpu_cc_off, gpu_nvml_error, ...
"""

from __future__ import annotations

from cryptography import x509

__all__ = [
    "X509_DECODE_ERRORS",
    "ApiError",
    "AttestationError",
    "CllmError",
    "CollateralError",
    "CollateralFetchError",
    "CollateralFormatError",
    "CryptoError",
    "EngineError",
    "EventLogError",
    "EvidenceError",
    "GpuError",
    "GpuEvidenceFormatError",
    "MeasurementError",
    "PolicyError",
    "QuoteFormatError",
    "ReleaseError",
    "ServerError",
    "TeeError",
    "VerificationError",
]


class CllmError(Exception):
    """Root of every error cllm raises on purpose."""

    default_code = "cllm_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class QuoteFormatError(CllmError):
    """Bytes that are not a well-formed quote (or PCK certificate extension).

    ``offset`` is the byte offset where parsing failed, relative to the start of the input
    being parsed (the quote, or the extension's DER value).
    """

    default_code = "quote_format"

    def __init__(self, reason: str, *, offset: int, code: str | None = None) -> None:
        super().__init__(f"{reason} (at offset {offset})", code=code)
        self.offset = offset
        self.reason = reason


class CollateralError(CllmError):
    """Base for problems with verification collateral (TCB info, QE identity, CRLs, chains)."""

    default_code = "collateral_error"


class CollateralFormatError(CollateralError):
    """Collateral that cannot be decoded, or whose format version cllm does not support."""

    default_code = "collateral_format"


class CollateralFetchError(CollateralError):
    """Collateral could not be fetched from a PCCS or Intel PCS."""

    default_code = "collateral_fetch"


class EventLogError(CllmError):
    """An event log (cllm JSON, CCEL / TCG crypto-agile, dstack JSON) that cannot be decoded."""

    default_code = "eventlog_malformed"


class MeasurementError(CllmError):
    """A component could not be measured (missing file, unreadable directory, bad RECORD...)."""

    default_code = "measurement_failed"


class TeeError(CllmError):
    """The TEE backend could not produce a quote, extend a register or read its event log."""

    default_code = "tee_error"


class EvidenceError(CllmError):
    """An evidence document that is malformed or does not verify (binding, nonce, replay)."""

    default_code = "evidence_invalid"


class PolicyError(CllmError):
    """A policy file that cannot be read or is invalid (unknown key, bad value)."""

    default_code = "policy_invalid"


class ReleaseError(CllmError):
    """A release manifest that is malformed, or whose signature does not verify under the
    publisher key given (``release_malformed``, ``release_bad_signature``, ...)."""

    default_code = "release_invalid"


class VerificationError(CllmError):
    """Evidence was understood but did not verify. ``code`` names the failed check."""

    default_code = "verification_failed"


class AttestationError(CllmError):
    """A client refused to talk to a server: its evidence did not verify (``verification``
    holds the result), or it could not be verified at all."""

    default_code = "attestation_failed"

    def __init__(self, message: str, *, code: str | None = None, verification: object = None):
        super().__init__(message, code=code)
        self.verification = verification


class ApiError(CllmError):
    """A server answered a request with an error (HTTP status and the API's error code)."""

    default_code = "api_error"

    def __init__(self, message: str, *, code: str | None = None, status_code: int = 0):
        super().__init__(message, code=code)
        self.status_code = status_code


class CryptoError(CllmError):
    """An end-to-end encrypted message or a signed answer that does not open or verify."""

    default_code = "crypto_error"


class EngineError(CllmError):
    """An inference engine that cannot load, start, or answer (embedded or upstream)."""

    default_code = "engine_error"


class ServerError(CllmError):
    """``cllm serve`` cannot start with the configuration given."""

    default_code = "server_error"


class GpuEvidenceFormatError(CllmError):
    """Bytes that are not a well-formed NVIDIA GPU attestation report (SPDM GET_MEASUREMENTS
    request and response, opaque data), device certificate chain or RIM document.

    ``offset`` is the byte offset where parsing failed (-1 where no offset applies).
    """

    default_code = "gpu_report_malformed"

    def __init__(self, reason: str, *, offset: int = -1, code: str | None = None) -> None:
        super().__init__(reason if offset < 0 else f"{reason} (at offset {offset})", code=code)
        self.offset = offset
        self.reason = reason


class GpuError(CllmError):
    """A GPU backend (NVML, the simulated GPU) cannot give attestation evidence, or the boot
    gate refuses the GPUs it found (docs/gpu.md, "Collection and the boot gate")."""

    default_code = "gpu_error"


# Foreign exceptions: cryptography decodes certificate and CRL fields lazily and reports malformed
# DER, when a field is first read, as one of these. Code that reads X.509 from outside input
# catches exactly these and raises a CllmError ``from`` them.
X509_DECODE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    KeyError,
    TypeError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)
