"""TEE backends. For now: the simulated Intel DCAP world (``SimulatedDcap``)."""

from cllm.tee._sim_dcap import (
    DEFAULT_QE_LEVELS,
    DEFAULT_TCB_LEVELS,
    DEFAULT_TDX_MODULE_IDENTITIES,
    SIMULATED_QE_VENDOR_ID,
    SIMULATED_ROOT_CA_NAME,
    CollateralParams,
    IsvSvnLevel,
    PlatformTcbLevel,
    SimulatedDcap,
    SimulatedPlatform,
    SimulatedQe,
    SimulatedTd,
    TdxModuleIdentityParams,
)

__all__ = [
    "DEFAULT_QE_LEVELS",
    "DEFAULT_TCB_LEVELS",
    "DEFAULT_TDX_MODULE_IDENTITIES",
    "SIMULATED_QE_VENDOR_ID",
    "SIMULATED_ROOT_CA_NAME",
    "CollateralParams",
    "IsvSvnLevel",
    "PlatformTcbLevel",
    "SimulatedDcap",
    "SimulatedPlatform",
    "SimulatedQe",
    "SimulatedTd",
    "TdxModuleIdentityParams",
]
