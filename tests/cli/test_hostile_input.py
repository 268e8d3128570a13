"""`cllm quote verify` and `cllm evidence check` on hostile input: a PCK chain bomb is rejected
by shape at once, and a lone surrogate in collateral is a typed error, never a traceback."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import hostile_chains as hc
from cllm.cli import main
from cllm.tee import SimulatedDcap

AT = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> SimulatedDcap:
    return SimulatedDcap.from_seed(
        b"cli hostile",
        not_before=datetime(2025, 1, 1, tzinfo=UTC),
        not_after=datetime(2027, 1, 1, tzinfo=UTC),
    )


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def _files(sim: SimulatedDcap, tmp_path: Path, quote: bytes) -> tuple[str, str, str]:
    (tmp_path / "q.bin").write_bytes(quote)
    (tmp_path / "c.json").write_text(json.dumps(sim.collateral().to_json_dict()))
    (tmp_path / "root.pem").write_bytes(sim.root_ca_pem())
    return str(tmp_path / "q.bin"), str(tmp_path / "c.json"), str(tmp_path / "root.pem")


@pytest.mark.parametrize("total", [3, 8])
def test_quote_verify_rejects_a_chain_bomb_by_shape(
    sim: SimulatedDcap, tmp_path: Path, capsys: pytest.CaptureFixture[str], total: int
) -> None:
    report_data = hashlib.sha512(b"cli").digest()
    quote, collateral, root = _files(
        sim, tmp_path, hc.quote_with_chain(sim, hc.pck_bomb(sim, total), report_data)
    )
    started = time.monotonic()
    code, doc = _run(
        capsys,
        "quote",
        "verify",
        quote,
        "--collateral",
        collateral,
        "--at",
        str(int(AT.timestamp())),
        "--root-ca",
        root,
        "--json",
    )
    assert time.monotonic() - started < 2.0
    assert (code, doc["error"]["code"]) == (1, "chain_shape_invalid")


def test_quote_verify_lone_surrogate_in_collateral(
    sim: SimulatedDcap, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quote, collateral, root = _files(sim, tmp_path, sim.quote(report_data=bytes(64)))
    doc = json.loads(Path(collateral).read_text())
    doc["qe_identity"] = doc["qe_identity"][:5] + "\ud800" + doc["qe_identity"][5:]
    Path(collateral).write_text(json.dumps(doc))  # ASCII: the surrogate as \ud800
    code, out = _run(
        capsys,
        "quote",
        "verify",
        quote,
        "--collateral",
        collateral,
        "--at",
        str(int(AT.timestamp())),
        "--root-ca",
        root,
        "--json",
    )
    assert code == 2
    assert out["error"]["code"] == "collateral_malformed"


def test_evidence_check_rejects_a_chain_bomb_by_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cllm.evidence import Binding, build_evidence
    from cllm.tee import SimulatedTdBackend, load_simulated_world

    now = 1_790_000_000
    world = load_simulated_world(tmp_path / "td", clock=lambda: float(now))
    nonce = bytes(range(32))
    world.dcap.pck_chain_pem = lambda: hc.pck_bomb(world.dcap, 6)  # type: ignore[method-assign]
    evidence = build_evidence(
        SimulatedTdBackend(world),
        tee="simulated-tdx",
        binding=Binding.with_throwaway_keys(nonce),
        events=[],
        collateral=world.collateral(),
    )
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(evidence.to_json()))
    started = time.monotonic()
    code, doc = _run(
        capsys,
        "evidence",
        "check",
        str(path),
        "--nonce",
        nonce.hex(),
        "--trust-simulated-root",
        str(world.root_ca_path),
        "--at",
        str(now),
        "--json",
    )
    assert time.monotonic() - started < 2.0
    assert code == 1
    assert doc["dcap"]["error"]["code"] == "chain_shape_invalid"
