"""`cllm measure` and `cllm eventlog replay`: the contract outside checks call."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import pytest

from cllm.cli import main
from cllm.measure import parse_event_log, replay
from vectors import params, require_vectors, vectors_dir


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    engine = tmp_path / "engine"
    engine.mkdir()
    (engine / "server").write_bytes(b"\x7fELF fake engine")
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "settings": {"port": 8080, "api_key": "s3cret"},
                "argv": ["cllm", "serve", "--api-key", "zzz", "--port", "8080"],
            }
        )
    )
    return {"model": model, "engine": engine, "config": config}


def test_measure_upstream_engine(
    capsys: pytest.CaptureFixture[str], inputs: dict[str, Path]
) -> None:
    argv = ["measure", "--engine", "openai", "--model", str(inputs["model"])]
    argv += ["--measure", str(inputs["engine"]), "--config", str(inputs["config"])]
    code, doc = _run(capsys, *argv)
    assert code == 0
    events = parse_event_log(doc["events"])
    assert replay(events)[3].hex() == doc["rtmr3"]
    assert len(events) == 5
    assert events[0].type == "cllm.start"  # a first start's marker (issue 12)
    config = doc["events"][-1]["details"]
    assert "api_key" not in json.dumps(config["settings"])
    assert "zzz" not in config["argv"]
    # Deterministic: a third party computes the same reference values.
    again = _run(capsys, *argv)[1]
    assert again == doc
    # Any change to a measured input changes RTMR3.
    inputs["model"].write_bytes(b"GGUF tampered")
    assert _run(capsys, *argv)[1]["rtmr3"] != doc["rtmr3"]


def test_upstream_engine_must_be_measured(
    capsys: pytest.CaptureFixture[str], inputs: dict[str, Path]
) -> None:
    code, doc = _run(capsys, "measure", "--engine", "openai", "--model", str(inputs["model"]))
    assert code == 2
    assert doc["error"]["code"] == "engine_unmeasured"


def test_embedded_engine_must_be_installed(
    capsys: pytest.CaptureFixture[str], inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.metadata.distribution

    def without_engine(name: str) -> importlib.metadata.Distribution:
        if name == "llama-cpp-python":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_engine)
    code, doc = _run(capsys, "measure", "--model", str(inputs["model"]))
    assert code == 2
    assert doc["error"]["code"] == "engine_not_installed"


def test_missing_model_file(capsys: pytest.CaptureFixture[str], inputs: dict[str, Path]) -> None:
    argv = ["measure", "--engine", "openai", "--measure", str(inputs["engine"])]
    code, doc = _run(capsys, *argv, "--model", str(inputs["model"]) + ".missing")
    assert code == 2
    assert doc["error"]["code"] == "file_missing"


def test_replay_cllm_log(
    capsys: pytest.CaptureFixture[str], inputs: dict[str, Path], tmp_path: Path
) -> None:
    argv = ["measure", "--engine", "openai", "--model", str(inputs["model"])]
    _, doc = _run(capsys, *argv, "--measure", str(inputs["engine"]))
    log = tmp_path / "log.json"
    log.write_text(json.dumps(doc["events"]))
    code, registers = _run(capsys, "eventlog", "replay", str(log))
    assert code == 0
    assert registers == {
        "rtmr0": "00" * 48,
        "rtmr1": "00" * 48,
        "rtmr2": "00" * 48,
        "rtmr3": doc["rtmr3"],
    }
    whole = tmp_path / "measure.json"  # `cllm measure --json` output as it is
    whole.write_text(json.dumps(doc))
    assert _run(capsys, "eventlog", "replay", str(whole))[1] == registers
    lines = tmp_path / "log.jsonl"
    lines.write_text("".join(json.dumps(event) + "\n" for event in doc["events"]))
    assert _run(capsys, "eventlog", "replay", str(lines), "--format", "cllm")[1] == registers


@pytest.mark.parametrize("content", [b"[{}]", b"\x00\x01garbage", b'{"event_log": 5}', b"[1, 2]"])
def test_replay_malformed_logs_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes
) -> None:
    log = tmp_path / "log"
    log.write_bytes(content)
    code, doc = _run(capsys, "eventlog", "replay", str(log))
    assert code == 2
    assert doc["error"]["code"].startswith(("eventlog", "event_", "ccel"))


def _eventlog_cases() -> list[dict[str, Any]]:
    root = vectors_dir()
    if root is None:
        return []
    return list(json.loads((root / "eventlog_cases.json").read_text())["cases"])


@pytest.mark.parametrize("entry", params(_eventlog_cases()))
def test_replay_corpus_logs_as_replays_to_says(
    capsys: pytest.CaptureFixture[str], entry: dict[str, Any]
) -> None:
    root = require_vectors()
    files = {item["role"]: str(root / item["path"]) for item in entry["eventlog_files"]}
    if entry["format"] == "ccel":
        argv = [files["ccel_data"], "--format", "ccel", "--ccel-table", files["ccel_table"]]
    else:
        argv = [files["json"], "--format", "dstack"]
    code, registers = _run(capsys, "eventlog", "replay", *argv)
    assert code == 0
    for name, replays in entry["replays_to"].items():
        assert (registers[name] == entry["expected"][name]) is replays, name
