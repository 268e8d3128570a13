"""Signed releases through the client against a real ``cllm serve`` (issue 12): under the
release of what it runs, simulated evidence is ``warning`` with only ``simulated_evidence``;
under a release of other software, ``contraindicated`` naming the component; a manifest not
signed by the key the user trusts is refused before any server is contacted."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from cllm.cli import main
from cllm.client import Client, LocalVerifier
from cllm.errors import AttestationError, CllmError
from cllm.measure import Event, parse_event_log
from cllm.release import create_release, generate_publisher_key, load_private_key
from serving import ServeProcess


def _served_events(server: ServeProcess) -> tuple[Event, ...]:
    nonce = os.urandom(32).hex()
    document = httpx.get(f"{server.url}/v1/attestation/report", params={"nonce": nonce}).json()
    return parse_event_log(document["event_log"])


def _release(
    tmp_path: Path, events: tuple[Event, ...], *, name: str = "release.json"
) -> tuple[Path, Path]:
    private, public = generate_publisher_key()
    key = tmp_path / f"{name}.pub.pem"
    key.write_bytes(public)
    manifest = tmp_path / name
    manifest.write_bytes(
        create_release(
            name="cllm",
            version="test",
            created=1_790_000_000,
            components=events,
            boot={},
            key=load_private_key(private),
        )
    )
    return manifest, key


def _verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["verify", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_the_release_of_what_runs_leaves_only_simulated_evidence(
    server: ServeProcess, simulated_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, key = _release(tmp_path, _served_events(server))
    code, doc = _verify(
        capsys,
        server.url,
        "--trust-simulated-root",
        str(simulated_root),
        "--release",
        str(manifest),
        "--publisher-key",
        str(key),
    )
    assert code == 0
    assert doc["status"] == "warning"
    assert [r["code"] for r in doc["reasons"]] == ["simulated_evidence"]
    assert doc["reference"]["components"] is True
    (release,) = doc["reference"]["releases"]
    assert release["name"] == "cllm" and len(release["publisher_key_sha256"]) == 64
    assert doc["upstream"] == {"scope": "embedded", "host": None}
    # Without the release: the software is not pinned, and the verdict says so.
    code, doc = _verify(capsys, server.url, "--trust-simulated-root", str(simulated_root))
    assert [r["code"] for r in doc["reasons"]] == ["no_reference_values", "simulated_evidence"]


def test_a_release_of_other_software_names_the_component(
    server: ServeProcess, simulated_root: Path, tmp_path: Path
) -> None:
    events = tuple(
        Event(rtmr=3, type=e.type, name=e.name, digest=bytes(48), details=e.details)
        if e.type == "cllm.model"
        else e
        for e in _served_events(server)
    )
    manifest, key = _release(tmp_path, events)
    verifier = LocalVerifier(
        release=manifest, publisher_key=key, trust_simulated_root=simulated_root
    )
    with Client(server.url, verifier=verifier) as client:
        result = client.verify()
        assert result.status == "contraindicated"
        assert [r.code for r in result.reasons] == ["component_mismatch"]
        assert "cllm.model" in result.reasons[0].message
        with pytest.raises(AttestationError):
            client.chat.completions.create(messages=[{"role": "user", "content": "hi"}])


def test_a_manifest_the_user_did_not_trust_is_refused_up_front(
    server: ServeProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, _ = _release(tmp_path, _served_events(server))
    _, stranger = _release(tmp_path, _served_events(server), name="other.json")
    with pytest.raises(CllmError) as raised:
        LocalVerifier(release=manifest, publisher_key=stranger)
    assert raised.value.code == "release_wrong_publisher"
    code, doc = _verify(
        capsys, server.url, "--release", str(manifest), "--publisher-key", str(stranger)
    )
    assert (code, doc["error"]["code"]) == (2, "release_wrong_publisher")
    code, doc = _verify(capsys, server.url, "--release", str(manifest))
    assert (code, doc["error"]["code"]) == (2, "usage")
