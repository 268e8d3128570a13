"""`cllm evidence check` on evidence with a simulated GPU: a warning that names it with
``--trust-simulated-gpu-root``, refused without it; and ``cllm trust add`` keeps the flag for
the local verifier of that server."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from cllm.cli import main
from cllm.client import LocalVerifier, TrustConfig, trusted_verifier
from cllm.evidence import Binding, build_batch_evidence
from cllm.gpu import SelectedGpuBackend, load_simulated_gpu
from cllm.measure import EventLog
from cllm.server import ServeSettings
from cllm.server._gpu import gpu_boot_gate
from cllm.server._gpu_evidence import gpu_collector
from cllm.tee import SimulatedTdBackend, load_simulated_world, rtmr3_extender


@pytest.fixture
def gpu_doc(tmp_path: Path) -> tuple[dict[str, Any], Path, Path]:
    world = load_simulated_world(tmp_path, clock=time.time)
    backend = SimulatedTdBackend(world)
    gpu = load_simulated_gpu(tmp_path, clock=time.time)
    _, gate = gpu_boot_gate(
        ServeSettings(state_dir=tmp_path, tee="simulated"),
        clock=time.time,
        selected=SelectedGpuBackend(gpu, "test"),
    )
    assert gate.event is not None
    log = EventLog(rtmr3_extender(backend))
    log.append(gate.event)
    keys = Binding.with_throwaway_keys(bytes(32))
    [doc] = build_batch_evidence(
        backend,
        tee="simulated-tdx",
        bindings=[Binding(os.urandom(32), keys.signing_key, keys.hpke_key, None)],
        events=log.events(),
        collateral=world.collateral(),
        gpu=gpu_collector(gate, clock=time.time),
    )
    device, rim = gpu.root_pems()
    pem = tmp_path / "gpu-root.pem"
    pem.write_bytes(device + rim)
    return json.loads(json.dumps(doc.to_json())), world.root_ca_path, pem


def test_evidence_check_judges_the_simulated_gpu(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, gpu_doc: tuple[dict[str, Any], Path, Path]
) -> None:
    doc, root, gpu_root = gpu_doc
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(doc))
    argv = ["evidence", "check", str(path), "--nonce", doc["binding"]["nonce"]]
    argv += ["--trust-simulated-root", str(root), "--json"]
    code = main([*argv, "--trust-simulated-gpu-root", str(gpu_root)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert out["status"] == "warning"
    assert "simulated_gpu" in [reason["code"] for reason in out["reasons"]]
    code = main(argv)
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [reason["code"] for reason in out["reasons"]] == ["simulated_gpu_not_trusted"]


def test_trust_add_keeps_the_simulated_gpu_root(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, gpu_doc: tuple[dict[str, Any], Path, Path]
) -> None:
    doc, root, gpu_root = gpu_doc
    url = "http://127.0.0.1:8080"
    argv = ["trust", "add", url, "--trust-simulated-root", str(root)]
    assert main([*argv, "--trust-simulated-gpu-root", str(gpu_root)]) == 0
    capsys.readouterr()
    entry = TrustConfig.load().for_url(url)
    assert entry is not None and entry.trust_simulated_gpu_root == str(gpu_root.resolve())
    verifier = trusted_verifier(url)
    assert isinstance(verifier, LocalVerifier)
    nonce = bytes.fromhex(doc["binding"]["nonce"])
    result = verifier.appraise(doc, nonce=nonce)
    assert result.status == "warning" and "simulated_gpu" in [r.code for r in result.reasons]
