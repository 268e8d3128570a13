"""NVIDIA GPU evidence: SPDM measurement reports, device certificate chains, RIMs and OCSP.

``verify_gpu_evidence`` (or a long-lived ``GpuVerifier``) runs the numbered fail-closed pipeline
of docs/gpu.md with the time, expected nonce, trust roots, RIM source and OCSP policy as inputs.
"""

from cllm.gpu._backend import GpuBackend, GpuCcState, GpuDevice, GpuEvidence
from cllm.gpu._bundle import GpuBundleVerification, verify_bundle
from cllm.gpu._chain import GpuArch
from cllm.gpu._document import (
    GPU_EVIDENCE_VERSION,
    GPU_NONCE_DOMAIN,
    GpuDocument,
    GpuReportEntry,
    gpu_document_digest,
    gpu_nonce,
    parse_gpu_document,
)
from cllm.gpu._ocsp import NVIDIA_OCSP_URL, OcspFetcher, OcspMode, OcspPolicy, OcspSource
from cllm.gpu._pipeline import (
    NO_RIMS,
    GpuVerifier,
    driver_rim_id,
    vbios_rim_id,
    verify_gpu_evidence,
)
from cllm.gpu._report import GpuReport, MeasurementBlock, build_report, parse_report
from cllm.gpu._result import GpuClaims, GpuVerification
from cllm.gpu._rim import GoldenMeasurement, Rim, RimKind, build_rim
from cllm.gpu._roots import GpuTrustRoots, nvidia_roots
from cllm.gpu._select import (
    GpuBackendChoice,
    NoGpuBackend,
    SelectedGpuBackend,
    select_gpu_backend,
)
from cllm.gpu._simulated import (
    SimulatedGpuBackend,
    load_simulated_gpu,
    simulated_roots_from_pem,
    simulated_trust_roots,
)
from cllm.gpu._sources import RimDirectory, RimFiles, RimService, RimSource, RimSources

__all__ = [
    "GPU_EVIDENCE_VERSION",
    "GPU_NONCE_DOMAIN",
    "NO_RIMS",
    "NVIDIA_OCSP_URL",
    "GoldenMeasurement",
    "GpuArch",
    "GpuBackend",
    "GpuBackendChoice",
    "GpuBundleVerification",
    "GpuCcState",
    "GpuClaims",
    "GpuDevice",
    "GpuDocument",
    "GpuEvidence",
    "GpuReport",
    "GpuReportEntry",
    "GpuTrustRoots",
    "GpuVerification",
    "GpuVerifier",
    "MeasurementBlock",
    "NoGpuBackend",
    "OcspFetcher",
    "OcspMode",
    "OcspPolicy",
    "OcspSource",
    "Rim",
    "RimDirectory",
    "RimFiles",
    "RimKind",
    "RimService",
    "RimSource",
    "RimSources",
    "SelectedGpuBackend",
    "SimulatedGpuBackend",
    "build_report",
    "build_rim",
    "driver_rim_id",
    "gpu_document_digest",
    "gpu_nonce",
    "load_simulated_gpu",
    "nvidia_roots",
    "parse_gpu_document",
    "parse_report",
    "select_gpu_backend",
    "simulated_roots_from_pem",
    "simulated_trust_roots",
    "vbios_rim_id",
    "verify_bundle",
    "verify_gpu_evidence",
]
