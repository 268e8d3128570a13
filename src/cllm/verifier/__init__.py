"""The attestation service (``cllm verifier serve``): evidence in, signed EAR-style token out."""

from cllm.appraisal import CollateralSource, EvidenceAppraiser, Trust, Verdict
from cllm.verifier._app import (
    AttestationRequest,
    VerifierState,
    app_from_environment,
    create_app,
    load_state,
)
from cllm.verifier._settings import VerifierSettings

__all__ = [
    "AttestationRequest",
    "CollateralSource",
    "EvidenceAppraiser",
    "Trust",
    "Verdict",
    "VerifierSettings",
    "VerifierState",
    "app_from_environment",
    "create_app",
    "load_state",
]
