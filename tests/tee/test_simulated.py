"""The simulated TD backend: persisted world (0600 files), quotes that the real verifier accepts
under the simulation root only, RTMR3 driven by the event log, a CCEL that replays to RTMR0-2."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from cllm.measure import ZERO_RTMR, Event, EventLog, extend, replay_ccel
from cllm.quote import parse_quote
from cllm.tee import (
    SIMULATED_QE_VENDOR_ID,
    SimulatedTdBackend,
    default_state_dir,
    load_simulated_world,
    rtmr3_extender,
    select_backend,
)
from cllm.verify import QuoteVerifier, intel_root

NOW = 1_790_000_000


def _clock() -> float:
    return float(NOW)


def _event(name: str) -> Event:
    return Event(rtmr=3, type="cllm.test", name=name, digest=bytes(48), details={"n": name})


def test_state_files_are_private_and_stable(tmp_path: Path) -> None:
    world = load_simulated_world(tmp_path, clock=_clock)
    base = tmp_path / "simulated"
    for name in ("seed", "validity.json", "root-ca.pem", "collateral.json"):
        mode = stat.S_IMODE((base / name).stat().st_mode)
        assert mode == 0o600, name
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    again = load_simulated_world(tmp_path, clock=lambda: float(NOW + 86_400 * 30))
    assert again.root_ca_pem() == world.root_ca_pem()
    assert again.collateral() == world.collateral()
    assert world.root_ca_path.read_bytes() == world.root_ca_pem()


def test_concurrent_first_use_agrees(tmp_path: Path) -> None:
    roots: list[bytes] = []

    def load() -> None:
        roots.append(load_simulated_world(tmp_path, clock=_clock).root_ca_pem())

    threads = [threading.Thread(target=load) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(roots)) == 1


def test_separate_state_dirs_are_separate_worlds(tmp_path: Path) -> None:
    one = load_simulated_world(tmp_path / "a", clock=_clock)
    two = load_simulated_world(tmp_path / "b", clock=_clock)
    assert one.root_ca_pem() != two.root_ca_pem()
    assert one.mrtd != two.mrtd


def test_quote_verifies_under_the_simulation_root_only(tmp_path: Path) -> None:
    world = load_simulated_world(tmp_path, clock=_clock)
    backend = SimulatedTdBackend(world)
    quote = backend.get_quote(b"\x07" * 64)
    parsed = parse_quote(quote)
    assert parsed.version == 4
    assert parsed.header.tee_type == 0x81
    assert parsed.header.qe_vendor_id == SIMULATED_QE_VENDOR_ID
    assert parsed.td_report.report_data == b"\x07" * 64
    assert parsed.td_report.mrtd == world.mrtd
    sim = QuoteVerifier(trust_root=world.dcap.trust_root()).verify(
        quote, world.collateral(), at=NOW
    )
    assert sim.ok, sim.error
    assert sim.tcb_status == "UpToDate"
    intel = QuoteVerifier(trust_root=intel_root()).verify(quote, world.collateral(), at=NOW)
    assert not intel.ok
    assert intel.error is not None and intel.error.code == "chain_untrusted"


def test_rtmr3_follows_the_event_log(tmp_path: Path) -> None:
    backend = SimulatedTdBackend(load_simulated_world(tmp_path, clock=_clock))
    log = EventLog(rtmr3_extender(backend))
    expected = ZERO_RTMR
    for name in ("one", "two", "three"):
        event = _event(name)
        log.append(event)
        expected = extend(expected, event.extend_value())
    quote = parse_quote(backend.get_quote(bytes(64)))
    assert quote.td_report.rtmr3 == expected == backend.rtmr3
    assert log.rtmrs()[3] == expected


def test_ccel_replays_to_rtmr0_to_2(tmp_path: Path) -> None:
    backend = SimulatedTdBackend(load_simulated_world(tmp_path, clock=_clock))
    ccel = backend.read_ccel()
    assert ccel is not None
    firmware = replay_ccel(*ccel)
    body = parse_quote(backend.get_quote(bytes(64))).td_report
    assert (firmware.rtmr0, firmware.rtmr1, firmware.rtmr2) == (body.rtmr0, body.rtmr1, body.rtmr2)
    assert body.rtmr0 != ZERO_RTMR


@pytest.mark.parametrize(("size", "method"), [(63, "get_quote"), (47, "extend_rtmr3")])
def test_wrong_sizes_are_programming_errors(tmp_path: Path, size: int, method: str) -> None:
    backend = SimulatedTdBackend(load_simulated_world(tmp_path, clock=_clock))
    with pytest.raises(ValueError):  # noqa: PT011 - the size is the point
        getattr(backend, method)(bytes(size))


def test_auto_falls_back_to_simulation_without_tdx(tmp_path: Path) -> None:
    chosen = select_backend("auto", root=tmp_path / "root", state_dir=tmp_path, clock=_clock)
    assert chosen.backend.name == "simulated"
    assert chosen.evidence_tee == "simulated-tdx"
    assert "Linux 6.7" in chosen.reason
    assert chosen.state_dir == tmp_path


def test_tdx_required_but_missing_is_an_error(tmp_path: Path) -> None:
    from cllm.errors import TeeError

    with pytest.raises(TeeError) as raised:
        select_backend("tdx", root=tmp_path, state_dir=tmp_path, clock=_clock)
    assert raised.value.code == "tsm_unavailable"


def test_default_state_dir() -> None:
    home = Path("/home/u")
    assert default_state_dir({"CLLM_STATE_DIR": "/s"}, home) == Path("/s")
    assert default_state_dir({"XDG_DATA_HOME": "/x"}, home) == Path("/x/cllm")
    assert default_state_dir({}, home) == Path("/home/u/.local/share/cllm")


def test_event_for_another_register_is_refused(tmp_path: Path) -> None:
    from cllm.errors import TeeError
    from cllm.tee import rtmr3_extender

    backend = SimulatedTdBackend(load_simulated_world(tmp_path, clock=_clock))
    extend = rtmr3_extender(backend)
    with pytest.raises(TeeError) as raised:
        extend(2, bytes(48))
    assert raised.value.code == "rtmr_not_extendable"
    assert backend.rtmr3 == ZERO_RTMR
