"""From evidence to a verdict (docs/design.md §7): the appraisal that the verifier service, the
SDK's local verifier and the CLI share. Imports no web framework, so the client installs without
one."""

from cllm.appraisal._appraise import EvidenceAppraiser, Verdict
from cllm.appraisal._collateral_source import CollateralSource
from cllm.appraisal._gpu import GpuAppraiser, GpuOutcome, GpuTrust, load_simulated_gpu_root

__all__ = [
    "CollateralSource",
    "EvidenceAppraiser",
    "GpuAppraiser",
    "GpuOutcome",
    "GpuTrust",
    "Verdict",
    "load_simulated_gpu_root",
]
