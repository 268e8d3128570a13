"""From evidence to a verdict (docs/design.md, "The appraisal steps"): the one appraisal that
the verifier service, the SDK's local verifier and ``cllm evidence check`` share, built from one
trust configuration (``Trust``). Imports no web framework, so the client installs without one."""

from cllm.appraisal._appraise import AppraisalStep, EvidenceAppraiser, Verdict
from cllm.appraisal._claims import Claims, GpuClaim, TokenClaims
from cllm.appraisal._collateral_source import CollateralSource
from cllm.appraisal._gpu import GpuAppraiser, GpuOutcome, GpuTrust, load_simulated_gpu_root
from cllm.appraisal._permit import Permit, permits
from cllm.appraisal._trust import Trust
from cllm.policy import Reason, Status

__all__ = [
    "AppraisalStep",
    "Claims",
    "CollateralSource",
    "EvidenceAppraiser",
    "GpuAppraiser",
    "GpuClaim",
    "GpuOutcome",
    "GpuTrust",
    "Permit",
    "Reason",
    "Status",
    "TokenClaims",
    "Trust",
    "Verdict",
    "load_simulated_gpu_root",
    "permits",
]
