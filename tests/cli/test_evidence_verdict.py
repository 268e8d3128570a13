"""`cllm evidence check` gives the verdict every verifier gives (issue 12): never `affirming`
without reference values; a release matching what the evidence carries is accepted, another
release names the foreign component."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from cllm.cli import main
from cllm.measure import parse_event_log
from cllm.release import create_release, generate_publisher_key, load_private_key


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def evidence(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> tuple[Path, str, Path]:
    nonce = secrets.token_hex(32)
    state = ["--state-dir", str(tmp_path), "--sys-root", str(tmp_path / "no-tdx")]
    code, document = _run(capsys, "tee", "evidence", "--nonce", nonce, *state)
    assert code == 0
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(document))
    return path, nonce, tmp_path / "simulated" / "root-ca.pem"


def _release(tmp_path: Path, document: dict[str, Any], *, tamper: bool) -> list[str]:
    events = parse_event_log(document["event_log"])
    if tamper:
        events = (*events[:-1], type(events[-1])(**{**_fields(events[-1]), "digest": bytes(48)}))
    private, public = generate_publisher_key()
    (tmp_path / "pub.pem").write_bytes(public)
    (tmp_path / "release.json").write_bytes(
        create_release(
            name="t",
            version="1",
            created=0,
            components=events,
            boot={},
            key=load_private_key(private),
        )
    )
    return [
        "--release",
        str(tmp_path / "release.json"),
        "--publisher-key",
        str(tmp_path / "pub.pem"),
    ]


def _fields(event: Any) -> dict[str, Any]:
    return {"rtmr": event.rtmr, "type": event.type, "name": event.name, "details": event.details}


def test_unpinned_evidence_is_at_best_warning(
    capsys: pytest.CaptureFixture[str], evidence: tuple[Path, str, Path]
) -> None:
    path, nonce, root = evidence
    code, doc = _run(
        capsys,
        "evidence",
        "check",
        str(path),
        "--nonce",
        nonce,
        "--trust-simulated-root",
        str(root),
    )
    assert (code, doc["ok"], doc["status"]) == (0, True, "warning")
    codes = [r["code"] for r in doc["reasons"]]
    # `cllm tee evidence` measures no server configuration: nothing says where prompts go.
    assert codes == ["upstream_unknown", "no_reference_values", "simulated_evidence"]
    assert doc["reference"]["components"] is False


def test_a_release_pins_it_and_another_release_names_the_component(
    capsys: pytest.CaptureFixture[str], evidence: tuple[Path, str, Path], tmp_path: Path
) -> None:
    path, nonce, root = evidence
    document = json.loads(path.read_text())
    base = ["evidence", "check", str(path), "--nonce", nonce, "--trust-simulated-root", str(root)]
    code, doc = _run(capsys, *base, *_release(tmp_path, document, tamper=False))
    assert code == 0
    # It matches, but `cllm tee evidence` measures only the package and a configuration: not
    # the startup components of a server, so the software is still not pinned as a whole.
    assert [r["code"] for r in doc["reasons"]] == [
        "upstream_unknown",
        "no_reference_values",
        "simulated_evidence",
    ]
    assert doc["reference"]["releases"][0]["name"] == "t"
    assert doc["reference"]["pinned_types"] == ["cllm.config", "cllm.distribution"]
    code, doc = _run(capsys, *base, *_release(tmp_path, document, tamper=True))
    assert (code, doc["status"]) == (1, "contraindicated")
    assert doc["reasons"][0]["code"] == "component_mismatch"
    assert "cllm.config" in doc["reasons"][0]["message"]
    code, doc = _run(capsys, *base, "--release", str(tmp_path / "release.json"))
    assert (code, doc["error"]["code"]) == (2, "usage")
