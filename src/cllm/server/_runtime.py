"""Everything a running server holds: engine, per-boot keys, the TEE and its event log."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cllm.engine import Engine
from cllm.evidence import build_evidence
from cllm.measure import DirectorySnapshot, Event, MemfdFile
from cllm.server._gpu import GpuGate
from cllm.server._gpu_evidence import gpu_collector
from cllm.server._keys import ServerKeys
from cllm.server._settings import ServeSettings
from cllm.tee import SelectedBackend, SimulatedTdBackend
from cllm.verify import Collateral

__all__ = ["Runtime"]


@dataclass(slots=True)
class Runtime:
    settings: ServeSettings
    engine: Engine
    keys: ServerKeys
    tee: SelectedBackend
    events: tuple[Event, ...]  # exactly what was extended into RTMR3, in order
    ui_measured: bool
    # Simulated collateral is part of the simulation, made once so every report carries the
    # same bytes (verifiers then decode and check it once); real TDX collateral comes from the
    # verifier's PCCS/PCS, not from this server.
    collateral: Collateral | None
    # The measured UI's bytes, served from memory (None: no UI), and the embedded model's
    # sealed copy, which llama.cpp loads (None: no embedded model). Both live as long as this.
    ui_snapshot: DirectorySnapshot | None = None
    model_file: MemfdFile | None = None
    # The GPU boot gate's outcome: what each quote's GPU evidence is collected from (None: no
    # GPU field in the evidence).
    gpu: GpuGate | None = None
    # One quote at a time: configfs-tsm has one report entry per writer, and quotes are cheap
    # to serialise against how rarely clients ask.
    _quote_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def simulated(self) -> bool:
        return isinstance(self.tee.backend, SimulatedTdBackend)

    def _evidence(self, nonce: bytes) -> dict[str, Any]:
        with self._quote_lock:
            evidence = build_evidence(
                self.tee.backend,
                tee=self.tee.evidence_tee,
                binding=self.keys.binding(nonce),
                events=self.events,
                collateral=self.collateral,
                gpu=gpu_collector(self.gpu, clock=time.time) if self.gpu is not None else None,
            )
        return evidence.to_json()

    async def evidence(self, nonce: bytes) -> dict[str, Any]:
        return await asyncio.to_thread(self._evidence, nonce)
