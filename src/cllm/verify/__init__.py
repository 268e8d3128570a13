"""DCAP quote verification: trust roots, PCK chain and CRLs, collateral, TCB evaluation."""

from cllm.verify._collateral import (
    Collateral,
    QeIdentity,
    TcbInfo,
    load_collateral,
    parse_qe_identity,
    parse_tcb_info,
)
from cllm.verify._intel_json import (
    IsvTcb,
    IsvTcbLevel,
    Tcb,
    TcbComponent,
    TcbLevel,
    TdxModule,
    TdxModuleIdentity,
    encode_qe_identity,
    encode_tcb_info,
)
from cllm.verify._pcs import (
    INTEL_PCS_URL,
    QCNL_CONF,
    CollateralFetcher,
    CollateralKey,
    collateral_key,
    collateral_key_of,
    default_collateral_url,
)
from cllm.verify._pipeline import QuoteVerifier
from cllm.verify._pki import parse_crl
from cllm.verify._result import Step, TdFacts, VerificationResult
from cllm.verify._roots import (
    INTEL_TCB_SIGNING_KEY,
    INTEL_TCB_SIGNING_SUBJECT,
    SIMULATED_QE_VENDOR_ID,
    SIMULATED_ROOT_CA_NAME,
    TCB_SIGNER_EXTENSION_OID,
    TcbSigner,
    TrustRoot,
    intel_root,
    qe_vendor_of,
)
from cllm.verify._status import TcbStatus

__all__ = [
    "INTEL_PCS_URL",
    "INTEL_TCB_SIGNING_KEY",
    "INTEL_TCB_SIGNING_SUBJECT",
    "QCNL_CONF",
    "SIMULATED_QE_VENDOR_ID",
    "SIMULATED_ROOT_CA_NAME",
    "TCB_SIGNER_EXTENSION_OID",
    "Collateral",
    "CollateralFetcher",
    "CollateralKey",
    "IsvTcb",
    "IsvTcbLevel",
    "QeIdentity",
    "QuoteVerifier",
    "Step",
    "Tcb",
    "TcbComponent",
    "TcbInfo",
    "TcbLevel",
    "TcbSigner",
    "TcbStatus",
    "TdFacts",
    "TdxModule",
    "TdxModuleIdentity",
    "TrustRoot",
    "VerificationResult",
    "collateral_key",
    "collateral_key_of",
    "default_collateral_url",
    "encode_qe_identity",
    "encode_tcb_info",
    "intel_root",
    "load_collateral",
    "parse_crl",
    "parse_qe_identity",
    "parse_tcb_info",
    "qe_vendor_of",
]
