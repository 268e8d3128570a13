"""Evidence from a simulated TD, built as ``cllm serve`` builds it, for tests of the appraisal:
the given events measured into RTMR3, throwaway keys bound to a fresh nonce, the simulated
world's collateral carried (or ``collateral``), quoted by the world's TD (or ``backend``).
Returns the document as a verifier receives it (plain JSON) and the nonce."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from cllm.evidence import Binding, build_evidence
from cllm.measure import Event, EventLog
from cllm.tee import SimulatedTdBackend, TeeBackend, rtmr3_extender
from cllm.tee._simulated import SimulatedWorld
from cllm.verify import Collateral

CONFIG_EVENT = Event(rtmr=3, type="cllm.config", name="c", digest=bytes(48))


def simulated_evidence(
    world: SimulatedWorld,
    events: Sequence[Event] = (CONFIG_EVENT,),
    *,
    backend: TeeBackend | None = None,
    collateral: Collateral | None = None,
) -> tuple[dict[str, Any], bytes]:
    backend = SimulatedTdBackend(world) if backend is None else backend
    log = EventLog(rtmr3_extender(backend))
    for event in events:
        log.append(event)
    nonce = os.urandom(32)
    evidence = build_evidence(
        backend,
        tee="simulated-tdx",
        binding=Binding.with_throwaway_keys(nonce),
        events=log.events(),
        collateral=world.collateral() if collateral is None else collateral,
    )
    return json.loads(json.dumps(evidence.to_json())), nonce
