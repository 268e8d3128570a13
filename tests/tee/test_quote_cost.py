"""The simulated quote cost: presets with the numbers real paths measured, the driver's poll
rounding, one lock for all quotes, settings from the environment refused when malformed, and
no cost unless asked for (tests stay fast)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from cllm.errors import TeeError
from cllm.tee import SimulatedTdBackend, load_simulated_world, select_backend
from cllm.tee._quote_cost import QUOTE_COST_PRESETS, QuoteCost


def test_presets_match_the_measured_paths() -> None:
    durations = {name: cost.duration_ms for name, cost in QUOTE_COST_PRESETS.items()}
    assert durations == {
        "fast": 0.0,
        "vsock": 3.5,
        "patched-poll": 10.0,
        "gcp": 39.0,
        "stock-linux": 1000.0,
    }


@pytest.mark.parametrize(
    ("service", "poll", "duration"),
    [(4, 1000, 1000), (1001, 1000, 2000), (0, 10, 10), (39, 0, 39), (25, 10, 30)],
)
def test_the_driver_rounds_up_to_whole_polls(service: float, poll: float, duration: float) -> None:
    assert QuoteCost(service_ms=service, poll_ms=poll).duration_ms == duration


def test_environment_settings() -> None:
    assert QuoteCost.from_environment({}) == QuoteCost()
    assert QuoteCost.from_environment({"CLLM_SIM_QUOTE": "gcp"}).duration_ms == 39
    custom = QuoteCost.from_environment(
        {"CLLM_SIM_QUOTE": "stock-linux", "CLLM_SIM_QUOTE_POLL_MS": "10"}
    )
    assert custom.duration_ms == 10  # the preset's service time, the given poll interval
    for env in (
        {"CLLM_SIM_QUOTE": "fastest"},
        {"CLLM_SIM_QUOTE_MS": "x"},
        {"CLLM_SIM_QUOTE_MS": "-1"},
        {"CLLM_SIM_QUOTE_MS": "nan"},
        {"CLLM_SIM_QUOTE_POLL_MS": "1e9"},
    ):
        with pytest.raises(TeeError) as caught:
            QuoteCost.from_environment(env)
        assert caught.value.code == "config_invalid"


def test_quotes_take_their_time_one_at_a_time(tmp_path: Path) -> None:
    world = load_simulated_world(tmp_path, clock=time.time)
    backend = SimulatedTdBackend(world, quote_cost=QuoteCost(service_ms=50))
    started = time.monotonic()
    threads = [threading.Thread(target=backend.get_quote, args=(bytes(64),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started >= 4 * 0.050  # serial, behind one lock


def test_without_settings_quotes_cost_nothing_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CLLM_SIM_QUOTE", "CLLM_SIM_QUOTE_MS", "CLLM_SIM_QUOTE_POLL_MS"):
        monkeypatch.delenv(name, raising=False)
    chosen = select_backend("simulated", root=tmp_path, state_dir=tmp_path, clock=time.time)
    started = time.monotonic()
    for _ in range(20):
        chosen.backend.get_quote(bytes(64))
    assert time.monotonic() - started < 20 * 0.039  # far under any real path's cost


def test_select_backend_reads_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLLM_SIM_QUOTE", "no-such-preset")
    with pytest.raises(TeeError) as caught:
        select_backend("simulated", root=tmp_path, state_dir=tmp_path, clock=time.time)
    assert caught.value.code == "config_invalid"
