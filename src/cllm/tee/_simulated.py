"""The simulated TD: a TEE backend for machines without TDX.

It answers like a TD (byte-exact TDX v4 quotes, an RTMR3 that the event log extends, a firmware
event log in a CCEL table) but every key and certificate belongs to the simulated DCAP world of
``_sim_dcap``: its own root CA and QE vendor ID, so a verifier trusts it only when it is given
that root explicitly, and never under Intel's. Its evidence says ``"tee": "simulated-tdx"``.

The seed, and with it every key, lives in the state directory (0600 files), so a server and a
verifier on the same machine agree on the simulated root and collateral.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cllm._internal.files import ensure_dir, publish_file
from cllm.errors import CllmError, TeeError
from cllm.measure import RTMR_SIZE, ZERO_RTMR, TcgEvent, build_ccel, extend, replay_ccel
from cllm.tee._backend import REPORT_DATA_SIZE
from cllm.tee._quote_cost import QuoteCost
from cllm.tee._sim_dcap import SIMULATED_QE_VENDOR_ID, SimulatedDcap, SimulatedTd
from cllm.tee._state import read_or_create_secret
from cllm.verify import Collateral, TrustRoot

__all__ = [
    "SimulatedTdBackend",
    "SimulatedWorld",
    "load_simulated_world",
    "simulation_trust_root",
]

_log = logging.getLogger(__name__)

_SEED_SIZE: Final = 32
_VALIDITY: Final = timedelta(days=3 * 365)
_BACKDATE: Final = timedelta(days=1)  # tolerate clocks a little behind the one that made it
EV_POST_CODE: Final = 0x00000001
EV_EFI_VARIABLE_DRIVER_CONFIG: Final = 0x80000001
EV_EFI_BOOT_SERVICES_APPLICATION: Final = 0x80000003
EV_SEPARATOR: Final = 0x00000004


@dataclass(frozen=True, slots=True)
class SimulatedWorld:
    """The persisted simulation: its DCAP world and where its public artifacts are."""

    dcap: SimulatedDcap
    mrtd: bytes
    state_dir: Path
    root_ca_path: Path
    collateral_path: Path

    def collateral(self) -> Collateral:
        return self.dcap.collateral()

    def root_ca_pem(self) -> bytes:
        return self.dcap.root_ca_pem()


def _synthetic_firmware_log(seed: bytes) -> list[TcgEvent]:
    """A small TDVF-like boot log for RTMR0..RTMR2, different per seed."""

    def data(label: str) -> bytes:
        return f"cllm simulated firmware: {label}".encode() + hashlib.sha256(seed).digest()[:8]

    return [
        TcgEvent.for_rtmr(0, EV_EFI_VARIABLE_DRIVER_CONFIG, data("SecureBoot")),
        TcgEvent.for_rtmr(0, EV_POST_CODE, data("TDVF configuration")),
        TcgEvent.for_rtmr(0, EV_SEPARATOR, b"\0\0\0\0"),
        TcgEvent.for_rtmr(1, EV_EFI_BOOT_SERVICES_APPLICATION, data("bootloader")),
        TcgEvent.for_rtmr(1, EV_SEPARATOR, b"\0\0\0\0"),
        TcgEvent.for_rtmr(2, EV_POST_CODE, data("kernel command line")),
    ]


def load_simulated_world(state_dir: Path, *, clock: Callable[[], float]) -> SimulatedWorld:
    """Load the simulation kept in ``state_dir/simulated``, creating it on first use."""
    base = ensure_dir(state_dir / "simulated")
    seed = read_or_create_secret(base / "seed", _SEED_SIZE)
    params_path = base / "validity.json"
    start = datetime.fromtimestamp(int(clock()), UTC) - _BACKDATE
    proposed = {
        "not_before": int(start.timestamp()),
        "not_after": int((start + _VALIDITY).timestamp()),
    }
    publish_file(params_path, json.dumps(proposed).encode(), replace=False)
    try:
        params = json.loads(params_path.read_text())
        not_before = datetime.fromtimestamp(int(params["not_before"]), UTC)
        not_after = datetime.fromtimestamp(int(params["not_after"]), UTC)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TeeError(f"{params_path} is corrupt", code="state_dir") from exc
    dcap = SimulatedDcap.from_seed(seed, not_before=not_before, not_after=not_after)
    root_ca_path = base / "root-ca.pem"
    collateral_path = base / "collateral.json"
    # Both are derived from the seed, so rewriting them is idempotent.
    publish_file(root_ca_path, dcap.root_ca_pem(), replace=True)
    collateral = json.dumps(dcap.collateral().to_json_dict(), indent=1).encode()
    publish_file(collateral_path, collateral, replace=True)
    mrtd = hashlib.sha384(b"cllm simulated MRTD\0" + seed).digest()
    return SimulatedWorld(
        dcap=dcap,
        mrtd=mrtd,
        state_dir=state_dir,
        root_ca_path=root_ca_path,
        collateral_path=collateral_path,
    )


class SimulatedTdBackend:
    """A TEE backend whose quotes come from the simulated DCAP world."""

    name: Final[str] = "simulated"

    def __init__(
        self, world: SimulatedWorld, *, debug: bool = False, quote_cost: QuoteCost | None = None
    ) -> None:
        """``debug`` sets TD_ATTRIBUTES.DEBUG, as a debug TD would (to test that policies
        reject such TDs). ``quote_cost`` makes quoting as slow and serial as a real path."""
        self._world = world
        self._quote_cost = quote_cost or QuoteCost()
        seed_tag = world.mrtd  # per-state firmware log, stable across restarts
        # A 4 KiB log area (TDVF reserves 64 KiB): the synthetic log is small, and every
        # evidence document carries the whole area.
        self._ccel = build_ccel(_synthetic_firmware_log(seed_tag), laml=4096)
        firmware = replay_ccel(*self._ccel)
        attributes = int.from_bytes(SimulatedTd().td_attributes, "little") | int(debug)
        self._td = SimulatedTd(
            mrtd=world.mrtd,
            rtmr0=firmware.rtmr0,
            rtmr1=firmware.rtmr1,
            rtmr2=firmware.rtmr2,
            td_attributes=attributes.to_bytes(8, "little"),
        )
        self._rtmr3 = ZERO_RTMR
        self._lock = threading.Lock()
        _log.warning(
            "simulated TD in use (state %s): its evidence is not hardware evidence",
            world.state_dir,
        )

    @property
    def world(self) -> SimulatedWorld:
        return self._world

    @property
    def rtmr3(self) -> bytes:
        with self._lock:
            return self._rtmr3

    def get_quote(self, report_data: bytes) -> bytes:
        if len(report_data) != REPORT_DATA_SIZE:
            raise ValueError(f"report_data must be {REPORT_DATA_SIZE} bytes")
        with self._lock:
            td = replace(self._td, rtmr3=self._rtmr3)
        return self._quote_cost.run(lambda: self._world.dcap.quote(report_data=report_data, td=td))

    def extend_rtmr3(self, digest: bytes) -> None:
        if len(digest) != RTMR_SIZE:
            raise ValueError(f"an RTMR digest must be {RTMR_SIZE} bytes")
        with self._lock:
            self._rtmr3 = extend(self._rtmr3, digest)

    def read_ccel(self) -> tuple[bytes, bytes] | None:
        return self._ccel


def simulation_trust_root(path: Path) -> TrustRoot:
    """A simulation root a verifier was told to trust (``--trust-simulated-root``): its quotes
    name the simulated QE vendor, and it must not be Intel's root (simulated evidence would
    then be judged as hardware evidence)."""
    root = TrustRoot.from_pem_file(
        path, name="simulation root", qe_vendor_id=SIMULATED_QE_VENDOR_ID
    )
    if root.is_intel_production:
        raise CllmError("--trust-simulated-root must not be Intel's root", code="config_invalid")
    _log.warning("trusting SIMULATED evidence under %s (at best 'warning')", root.sha256)
    return root
