"""``cllm verify`` and ``cllm chat`` against a real server and verifier: reports, exit codes,
refusal to send, piped chat."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cllm.cli import main
from proxying import RecordingProxy
from serving import ServeProcess, VerifierProcess

REQUIRED = {"status", "reasons", "tee", "simulated", "tcb", "td", "components", "keys"}


def _verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(["verify", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_verify_locally_with_the_simulated_root_trusted(
    server: ServeProcess, simulated_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, doc = _verify(capsys, server.url, "--trust-simulated-root", str(simulated_root))
    assert code == 0  # warning passes, visibly...
    assert set(doc) >= REQUIRED
    assert doc["status"] == "warning"
    assert doc["simulated"] is True
    assert doc["tee"] == "simulated-tdx"
    assert doc["verifier"] == "local"
    assert [c["type"] for c in doc["components"]][:4] == [  # type: ignore[index]
        "cllm.start",  # each start is marked (issue 12)
        "cllm.package",
        "cllm.engine",
        "cllm.model",
    ]
    strict, _ = _verify(
        capsys, server.url, "--trust-simulated-root", str(simulated_root), "--strict"
    )
    assert strict == 1  # ...unless --strict


def test_verify_through_the_verifier_service(
    server: ServeProcess, verifier: VerifierProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, doc = _verify(capsys, server.url, "--verifier", verifier.url)
    assert code == 0
    assert doc["status"] == "warning"
    assert doc["verifier"] == verifier.url
    assert doc["keys"]["hpke_key"]  # type: ignore[index]


def test_untrusted_simulated_evidence_fails(
    server: ServeProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, doc = _verify(capsys, server.url)
    assert code == 1
    assert doc["status"] == "contraindicated"
    assert "simulated_not_trusted" in [r["code"] for r in doc["reasons"]]  # type: ignore[union-attr]


def test_unreachable_verifier_is_exit_1_with_a_reason(
    server: ServeProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, doc = _verify(capsys, server.url, "--verifier", "http://127.0.0.1:9")
    assert code == 1
    assert [r["code"] for r in doc["reasons"]] == ["verifier_unreachable"]  # type: ignore[union-attr]


def test_unreachable_server_is_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = _verify(capsys, "http://127.0.0.1:9")
    assert code == 1
    assert [r["code"] for r in doc["reasons"]] == ["server_unreachable"]  # type: ignore[union-attr]


def test_usage_errors_are_exit_2(server: ServeProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = _verify(capsys, server.url, "--verifier", "http://x", "--policy", "p.toml")
    assert code == 2
    assert doc["error"]["code"] == "usage"  # type: ignore[index]
    with pytest.raises(SystemExit) as caught:
        main(["verify", server.url, "--verifier", "http://x", "--local"])
    assert caught.value.code == 2


def test_readable_report(
    server: ServeProcess, simulated_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", server.url, "--trust-simulated-root", str(simulated_root)]) == 0
    out = capsys.readouterr().out
    for text in ("WARNING", "simulated", "rtmr3", "cllm.model", "hpke_key", "TCB status"):
        assert text in out


def test_chat_with_piped_stdin_answers_once(
    server: ServeProcess,
    simulated_root: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Name a colour. PIPED-7731"))
    with RecordingProxy(server.port) as proxy:
        code = main(
            ["chat", proxy.url, "--trust-simulated-root", str(simulated_root), "--max-tokens", "8"]
        )
        wire = proxy.captured()
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.strip()
    assert "end-to-end encrypted" in captured.err
    assert b"PIPED-7731" not in wire
    assert captured.out.strip().encode() not in wire


def test_chat_refuses_an_unverified_server(
    server: ServeProcess, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("SECRET-5512"))
    with RecordingProxy(server.port) as proxy:
        code = main(["chat", proxy.url])
        wire = proxy.captured()
    assert code == 1
    assert "refusing to send" in capsys.readouterr().err
    assert b"SECRET-5512" not in wire
    assert b"/v1/chat/completions" not in wire


def test_chat_unprotected_is_explicit_and_loud(
    server: ServeProcess, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Say hi."))
    code = main(["chat", server.url, "--unprotected", "--max-tokens", "4"])
    captured = capsys.readouterr()
    assert code == 0
    assert "UNPROTECTED" in captured.err
    assert captured.out.strip()
