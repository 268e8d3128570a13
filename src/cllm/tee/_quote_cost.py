"""What a quote costs on real hardware, for the simulated TD to imitate.

On a real TD a quote is slow and serial. The stock Linux configfs-tsm driver (tdx-guest) asks the
host's quote service through a GetQuote hypercall, then sleeps and polls for the answer once per
second behind one global lock, so one quote takes about one second (1,015 ms and 1,057 ms
measured by two public projects); a kernel patched to poll every 10 ms takes about 11 ms; Google
Cloud's TDX measured 39 ms, fully serial; talking vsock to the host's quote service costs 3 to
4 ms. The simulated TD signs a quote in about 0.09 ms, which hides the real limit.

``QuoteCost`` makes the simulated quote take what a real path takes: the host's service time,
rounded up to the driver's poll interval (the driver sleeps a whole interval before it first
looks), all behind one process-wide lock, as in the driver. Defaults: no added cost (tests stay
fast). Settings (environment): ``CLLM_SIM_QUOTE`` = a preset name, ``CLLM_SIM_QUOTE_MS`` (the
service time) and ``CLLM_SIM_QUOTE_POLL_MS`` (0: no polling), each overriding the preset.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from cllm.errors import TeeError

__all__ = ["QUOTE_COST_PRESETS", "QuoteCost"]

# One lock for every simulated TD in the process, like the driver's one global lock.
_QUOTE_LOCK: Final = threading.Lock()
_MAX_MS: Final = 60_000.0


@dataclass(frozen=True, slots=True)
class QuoteCost:
    service_ms: float = 0.0  # the host's quote service (and the hypercall) per quote
    poll_ms: float = 0.0  # the guest driver's poll interval; 0: it is told at once

    def __post_init__(self) -> None:
        for name, value in (("service", self.service_ms), ("poll", self.poll_ms)):
            if not 0 <= value <= _MAX_MS or math.isnan(value):
                raise TeeError(
                    f"simulated quote {name} time must be 0 to {_MAX_MS:.0f} ms",
                    code="config_invalid",
                )

    @property
    def duration_ms(self) -> float:
        """The time one quote takes: the service time, rounded up to whole poll intervals
        (at least one: the driver sleeps before it first looks)."""
        if self.poll_ms <= 0:
            return self.service_ms
        return self.poll_ms * max(1, math.ceil(self.service_ms / self.poll_ms))

    @property
    def free(self) -> bool:
        return self.service_ms == 0 and self.poll_ms == 0

    def run(
        self,
        make: Callable[[], bytes],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> bytes:
        """``make()`` under the global quote lock, taking at least ``duration_ms`` in all."""
        if self.free:
            return make()
        with _QUOTE_LOCK:
            started = clock()
            quote = make()
            left = self.duration_ms / 1000 - (clock() - started)
            if left > 0:
                sleep(left)
            return quote

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> QuoteCost:
        preset = env.get("CLLM_SIM_QUOTE", "").strip()
        if preset and preset not in QUOTE_COST_PRESETS:
            names = ", ".join(sorted(QUOTE_COST_PRESETS))
            raise TeeError(
                f"CLLM_SIM_QUOTE={preset!r} is not one of {names}", code="config_invalid"
            )
        base = QUOTE_COST_PRESETS.get(preset, cls())
        return cls(
            service_ms=_number(env, "CLLM_SIM_QUOTE_MS", base.service_ms),
            poll_ms=_number(env, "CLLM_SIM_QUOTE_POLL_MS", base.poll_ms),
        )


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError as exc:
        raise TeeError(f"{name}={text!r} is not a number", code="config_invalid") from exc


# The numbers measured on real paths (see the module docstring and docs/measurement.md).
QUOTE_COST_PRESETS: Final[Mapping[str, QuoteCost]] = {
    "fast": QuoteCost(),  # the simulation's own cost only
    "vsock": QuoteCost(service_ms=3.5),  # the host's quote service over vsock, directly
    "patched-poll": QuoteCost(service_ms=4.0, poll_ms=10.0),  # driver polling every 10 ms: ~11 ms
    "gcp": QuoteCost(service_ms=39.0),  # Google Cloud TDX, measured serial
    "stock-linux": QuoteCost(service_ms=4.0, poll_ms=1000.0),  # stock configfs-tsm: ~1 s
}
