"""TEE backends: real TDX through the kernel's interfaces (``TdxBackend``), the simulated TD
for machines without TDX (``SimulatedTdBackend``, built on the simulated DCAP world
``SimulatedDcap``), and the choice between them (``select_backend``)."""

from cllm.tee._backend import TeeBackend, rtmr3_extender
from cllm.tee._select import SelectedBackend, select_backend
from cllm.tee._sim_dcap import SIMULATED_QE_VENDOR_ID, SIMULATED_ROOT_CA_NAME, SimulatedDcap
from cllm.tee._simulated import SimulatedTdBackend, load_simulated_world, simulation_trust_root
from cllm.tee._state import default_state_dir
from cllm.tee._tdx import TdxBackend

__all__ = [
    "SIMULATED_QE_VENDOR_ID",
    "SIMULATED_ROOT_CA_NAME",
    "SelectedBackend",
    "SimulatedDcap",
    "SimulatedTdBackend",
    "TdxBackend",
    "TeeBackend",
    "default_state_dir",
    "load_simulated_world",
    "rtmr3_extender",
    "select_backend",
    "simulation_trust_root",
]
