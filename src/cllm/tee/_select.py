"""Choosing the TEE backend: ``tdx`` where the hardware is present, else ``simulated``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cllm.errors import TeeError
from cllm.tee._backend import TeeBackend
from cllm.tee._quote_cost import QuoteCost
from cllm.tee._simulated import SimulatedTdBackend, load_simulated_world
from cllm.tee._tdx import TdxBackend

__all__ = ["BackendChoice", "SelectedBackend", "select_backend"]

_log = logging.getLogger(__name__)

BackendChoice = Literal["auto", "tdx", "simulated"]


@dataclass(frozen=True, slots=True)
class SelectedBackend:
    backend: TeeBackend
    reason: str
    state_dir: Path | None  # where the simulation lives; None for real TDX

    @property
    def evidence_tee(self) -> Literal["tdx", "simulated-tdx"]:
        return "tdx" if self.backend.name == "tdx" else "simulated-tdx"


def select_backend(
    choice: BackendChoice,
    *,
    root: Path,
    state_dir: Path,
    clock: Callable[[], float],
) -> SelectedBackend:
    """``auto`` takes TDX when configfs-tsm offers a ``tdx_guest`` provider under ``root``, else
    the simulation, with a loud warning; ``tdx`` fails when TDX is missing."""
    if choice != "simulated":
        available, reason = TdxBackend.available(root)
        if available:
            return SelectedBackend(TdxBackend(root=root), reason, None)
        if choice == "tdx":
            raise TeeError(
                f"TDX backend requested but unavailable: {reason}", code="tsm_unavailable"
            )
        _log.warning("no TDX here (%s): falling back to the SIMULATED TD", reason)
        reason = f"no TDX hardware ({reason}); simulated TD"
    else:
        reason = "simulated TD requested"
    world = load_simulated_world(state_dir, clock=clock)
    cost = QuoteCost.from_environment(os.environ)  # CLLM_SIM_QUOTE*: see _quote_cost
    backend = SimulatedTdBackend(world, quote_cost=cost)
    if not cost.free:
        _log.warning("simulated quotes take %.1f ms each, one at a time", cost.duration_ms)
    return SelectedBackend(backend, reason, state_dir)
