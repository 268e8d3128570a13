"""TEE backends: real TDX through the kernel's interfaces (``TdxBackend``), the simulated TD
for machines without TDX (``SimulatedTdBackend``, built on the simulated DCAP world
``SimulatedDcap``), and the choice between them (``select_backend``)."""

from cllm.tee._backend import REPORT_DATA_SIZE, RTMR_DIGEST_SIZE, TeeBackend, rtmr3_extender
from cllm.tee._quote_cost import QUOTE_COST_PRESETS, QuoteCost
from cllm.tee._select import BackendChoice, SelectedBackend, select_backend
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
from cllm.tee._simulated import (
    SimulatedTdBackend,
    SimulatedWorld,
    load_simulated_world,
    simulation_trust_root,
)
from cllm.tee._state import default_state_dir
from cllm.tee._tdx import TdxBackend

__all__ = [
    "DEFAULT_QE_LEVELS",
    "DEFAULT_TCB_LEVELS",
    "DEFAULT_TDX_MODULE_IDENTITIES",
    "QUOTE_COST_PRESETS",
    "REPORT_DATA_SIZE",
    "RTMR_DIGEST_SIZE",
    "SIMULATED_QE_VENDOR_ID",
    "SIMULATED_ROOT_CA_NAME",
    "BackendChoice",
    "CollateralParams",
    "IsvSvnLevel",
    "PlatformTcbLevel",
    "QuoteCost",
    "SelectedBackend",
    "SimulatedDcap",
    "SimulatedPlatform",
    "SimulatedQe",
    "SimulatedTd",
    "SimulatedTdBackend",
    "SimulatedWorld",
    "TdxBackend",
    "TdxModuleIdentityParams",
    "TeeBackend",
    "default_state_dir",
    "load_simulated_world",
    "rtmr3_extender",
    "select_backend",
    "simulation_trust_root",
]
