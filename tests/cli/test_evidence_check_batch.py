"""`cllm evidence check` on batched evidence (version 2): a member of a batch checks out for its
own nonce, and a forged proof or another member's nonce is rejected (exit 1) with its code."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from cllm.cli import main
from cllm.evidence import Binding, build_batch_evidence
from cllm.measure import Event, EventLog
from cllm.tee import SimulatedTdBackend, load_simulated_world, rtmr3_extender


@pytest.fixture
def batch(tmp_path: Path) -> tuple[list[dict[str, Any]], Path]:
    world = load_simulated_world(tmp_path, clock=time.time)
    backend = SimulatedTdBackend(world)
    log = EventLog(rtmr3_extender(backend))
    log.append(Event(rtmr=3, type="cllm.config", name="c", digest=bytes(48)))
    keys = Binding.with_throwaway_keys(bytes(32))
    docs = build_batch_evidence(
        backend,
        tee="simulated-tdx",
        bindings=[Binding(os.urandom(32), keys.signing_key, keys.hpke_key, None) for _ in range(3)],
        events=log.events(),
        collateral=world.collateral(),
    )
    return [json.loads(json.dumps(d.to_json())) for d in docs], world.root_ca_path


def _check(
    capsys: pytest.CaptureFixture[str], tmp: Path, doc: dict[str, Any], nonce: str, root: Path
) -> tuple[int, Any]:
    path = tmp / f"evidence-{os.urandom(4).hex()}.json"
    path.write_text(json.dumps(doc))
    argv = ["evidence", "check", str(path), "--nonce", nonce, "--trust-simulated-root", str(root)]
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_members_check_and_forgeries_do_not(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    batch: tuple[list[dict[str, Any]], Path],
) -> None:
    docs, root = batch
    nonce = docs[1]["binding"]["nonce"]
    code, out = _check(capsys, tmp_path, docs[1], nonce, root)
    assert code == 0, out["error"]
    assert "batch_proof" in [step["name"] for step in out["evidence_steps"]]

    forged = {**docs[1], "batch": docs[0]["batch"]}
    code, out = _check(capsys, tmp_path, forged, nonce, root)
    assert code == 1
    assert out["error"]["code"] == "batch_proof_invalid"

    code, out = _check(capsys, tmp_path, docs[0], nonce, root)
    assert code == 1
    assert out["error"]["code"] == "nonce_mismatch"
