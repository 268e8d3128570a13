"""``cllm gpu info`` and ``cllm gpu simulated-root``: the backend chosen and why, the GPUs and
their CC state as the backend reports them, and the simulated GPU's roots."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cllm.cli import main
from cllm.gpu import load_simulated_gpu, simulated_roots_from_pem
from fake_pynvml import FakeNvml


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def test_info_simulated(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, doc = _run(
        capsys, "gpu", "info", "--gpu-backend", "simulated", "--state-dir", str(tmp_path), "--json"
    )
    assert code == 0
    assert (doc["backend"], doc["simulated"], doc["count"]) == ("simulated", True, 1)
    assert doc["cc"]["mode"] == "on" and doc["cc"]["attestable"] is True
    assert doc["gpus"][0]["arch"] == "HOPPER"


def test_info_none(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLLM_GPU_BACKEND", "none")
    code, doc = _run(capsys, "gpu", "info", "--json")
    assert code == 0
    assert (doc["backend"], doc["count"], doc["cc"]["mode"]) == ("none", 0, "off")


def test_info_nvml_cc_off_is_truthful(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeNvml(gpus=1, cc_feature=0, environment=0)
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    code, doc = _run(capsys, "gpu", "info", "--gpu-backend", "auto", "--json")
    assert code == 0
    assert (doc["backend"], doc["count"]) == ("nvml", 1)
    assert doc["cc"] == {
        "cc_enabled": False,
        "devtools": False,
        "environment": "unavailable",
        "multi_gpu_mode": "none",
        "ready": False,
        "mode": "off",
        "attestable": False,
    }
    assert doc["errors"] == {}


def test_info_reports_a_failing_query_with_its_code(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeNvml(gpus=1, errors={"nvmlSystemGetConfComputeState": 999})
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    code, doc = _run(capsys, "gpu", "info", "--json")
    assert code == 0
    assert "cc" not in doc  # not guessed
    assert doc["errors"]["cc"]["code"] == "gpu_nvml_error"


def test_info_nvml_requested_without_nvml(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    code, doc = _run(capsys, "gpu", "info", "--gpu-backend", "nvml", "--json")
    assert code == 2
    assert doc["error"]["code"] == "gpu_unavailable"


def test_simulated_root(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, doc = _run(capsys, "gpu", "simulated-root", "--state-dir", str(tmp_path), "--json")
    assert code == 0
    assert doc["roots_pem"] == doc["device_root_pem"] + doc["rim_root_pem"]
    assert doc["simulated"] is True
    gpu = load_simulated_gpu(tmp_path, clock=time.time)
    assert b"".join(gpu.root_pems()).decode() == doc["roots_pem"]
    assert not simulated_roots_from_pem(doc["roots_pem"].encode()).is_nvidia
