"""`cllm tee info|evidence|simulated-root` and `cllm evidence check`, end to end: evidence made
on the simulated TD, checked, and tampered with the ways outside checks will try."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from cllm.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_info_without_tdx(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, doc = _run(
        capsys, "tee", "info", "--sys-root", str(tmp_path), "--state-dir", str(tmp_path)
    )
    assert code == 0
    assert doc == {"backend": "simulated", "reason": doc["reason"], "state_dir": str(tmp_path)}
    assert "Linux 6.7" in doc["reason"]


def test_simulated_root(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, doc = _run(capsys, "tee", "simulated-root", "--state-dir", str(tmp_path))
    assert code == 0
    assert doc["root_ca_pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert (tmp_path / "simulated" / "root-ca.pem").read_text() == doc["root_ca_pem"]
    assert json.loads(Path(doc["collateral"]).read_text())["tcb_info"]
    assert _run(capsys, "tee", "simulated-root", "--state-dir", str(tmp_path))[1] == doc


class Issued:
    def __init__(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        self.capsys = capsys
        self.tmp = tmp_path
        self.nonce = secrets.token_hex(32)
        state = ["--state-dir", str(tmp_path), "--sys-root", str(tmp_path / "no-tdx")]
        code, self.document = _run(capsys, "tee", "evidence", "--nonce", self.nonce, *state)
        assert code == 0
        _, root = _run(capsys, "tee", "simulated-root", "--state-dir", str(tmp_path))
        self.root = tmp_path / "root.pem"
        self.root.write_text(root["root_ca_pem"])

    def check(
        self, document: dict[str, Any], *, nonce: str | None = None, trust: bool = True
    ) -> tuple[int, Any]:
        path = self.tmp / f"evidence-{secrets.token_hex(4)}.json"
        path.write_text(json.dumps(document))
        argv = ["evidence", "check", str(path), "--nonce", nonce or self.nonce]
        if trust:
            argv += ["--trust-simulated-root", str(self.root)]
        return _run(self.capsys, *argv)


@pytest.fixture
def issued(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Issued:
    return Issued(capsys, tmp_path)


def test_evidence_document_shape(issued: Issued) -> None:
    doc = issued.document
    assert set(doc) == {"version", "tee", "quote", "event_log", "ccel", "binding", "collateral"}
    assert doc["version"] == 1
    assert doc["tee"] == "simulated-tdx"
    assert doc["binding"]["nonce"] == issued.nonce
    assert [event["type"] for event in doc["event_log"]][-1] == "cllm.config"
    assert set(doc["ccel"]) == {"table", "data"}
    assert doc["collateral"]["tcb_info"]


def test_genuine_evidence_checks_under_the_simulation_root(issued: Issued) -> None:
    code, doc = issued.check(issued.document)
    assert code == 0, doc["error"]
    assert doc["ok"] is True
    assert doc["dcap"]["tcb_status"] == "UpToDate"
    assert doc["tee"] == "simulated-tdx"


def test_evidence_pieces_through_the_other_commands(
    issued: Issued, capsys: pytest.CaptureFixture[str]
) -> None:
    """The quote verifies with `cllm quote verify` under the simulation root, and replaying the
    evidence's event log gives the quote's RTMR3."""
    import base64

    quote = issued.tmp / "quote.bin"
    quote.write_bytes(base64.b64decode(issued.document["quote"]))
    evidence = issued.tmp / "evidence.json"
    evidence.write_text(json.dumps(issued.document))
    collateral = issued.tmp / "simulated" / "collateral.json"
    argv = [
        "quote",
        "verify",
        str(quote),
        "--collateral",
        str(collateral),
        "--root-ca",
        str(issued.root),
    ]
    code, verdict = _run(capsys, *argv)
    assert (code, verdict["tcb_status"]) == (0, "UpToDate")
    _, fields = _run(capsys, "quote", "show", str(quote))
    _, registers = _run(capsys, "eventlog", "replay", str(evidence))
    assert registers["rtmr3"] == fields["rtmr3"]


def test_simulated_evidence_never_passes_as_hardware(issued: Issued) -> None:
    code, doc = issued.check(issued.document, trust=False)
    assert (code, doc["error"]["code"]) == (1, "chain_untrusted")
    forged = dict(issued.document, tee="tdx")
    code, doc = issued.check(forged)
    assert (code, doc["error"]["code"]) == (1, "tee_mismatch")


def test_fresh_keys_per_call(issued: Issued, capsys: pytest.CaptureFixture[str]) -> None:
    state = ["--state-dir", str(issued.tmp), "--sys-root", str(issued.tmp / "no-tdx")]
    _, other = _run(capsys, "tee", "evidence", "--nonce", issued.nonce, *state)
    assert other["binding"]["hpke_key"] != issued.document["binding"]["hpke_key"]
    assert other["binding"]["signing_key"] != issued.document["binding"]["signing_key"]


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("edit", "rtmr3_mismatch"),
        ("reorder", "rtmr3_mismatch"),
        ("drop", "rtmr3_mismatch"),
        ("swap_hpke", "binding_mismatch"),
        ("swap_signing", "binding_mismatch"),
        ("swap_nonce", "binding_mismatch"),
    ],
)
def test_tampering_is_detected(
    issued: Issued, capsys: pytest.CaptureFixture[str], tamper: str, code: str
) -> None:
    document = json.loads(json.dumps(issued.document))
    log = document["event_log"]
    if tamper == "edit":
        log[-1]["details"]["argv"].append("--debug")
    elif tamper == "reorder":
        log.reverse()
    elif tamper == "drop":
        log.pop(0)
    else:
        state = ["--state-dir", str(issued.tmp), "--sys-root", str(issued.tmp / "no-tdx")]
        _, other = _run(capsys, "tee", "evidence", "--nonce", secrets.token_hex(32), *state)
        field = {"swap_hpke": "hpke_key", "swap_signing": "signing_key", "swap_nonce": "nonce"}[
            tamper
        ]
        document["binding"][field] = other["binding"][field]
    nonce = document["binding"]["nonce"] if tamper == "swap_nonce" else issued.nonce
    exit_code, doc = issued.check(document, nonce=nonce)
    assert exit_code == 1
    assert doc["ok"] is False
    assert doc["error"]["code"] == code


def test_wrong_nonce(issued: Issued) -> None:
    code, doc = issued.check(issued.document, nonce=secrets.token_hex(32))
    assert (code, doc["error"]["code"]) == (1, "nonce_mismatch")


def test_malformed_evidence_exits_2(issued: Issued) -> None:
    code, doc = issued.check({"version": 1})
    assert (code, doc["error"]["code"]) == (2, "evidence_malformed")


def test_bad_nonce_argument_is_rejected(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["tee", "evidence", "--nonce", "abc", "--state-dir", str(tmp_path)])
    assert raised.value.code == 2
