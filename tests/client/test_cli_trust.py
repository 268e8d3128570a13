"""``cllm trust add/show`` and the trust configuration under ``cllm verify``'s flags; and
everything a server or verifier chose printed as text (no markup, control characters
escaped), with the verdict line intact."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import httpx
import pytest

from cllm.cli import main
from cllm.client import RemoteVerifier, TrustConfig, default_trust_path, trusted_verifier
from cllm.errors import CllmError
from cllm.token import TokenSigner
from gateway import signing_verifier
from serving import ServeProcess, VerifierProcess


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def _kid(verifier: VerifierProcess) -> str:
    return str(httpx.get(f"{verifier.url}/.well-known/jwks.json").json()["keys"][0]["kid"])


def test_trust_add_pins_the_verifier_and_verify_uses_it(
    server: ServeProcess, verifier: VerifierProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["trust", "add", server.url + "/", "--verifier", verifier.url]) == 0
    assert _kid(verifier) in capsys.readouterr().out  # the pinned thumbprint, shown
    path = default_trust_path()
    assert path.is_relative_to(Path(os.environ["XDG_CONFIG_HOME"]))
    assert path.stat().st_mode & 0o777 == 0o600
    code, shown = _json(capsys, "trust", "show", server.url, "--json")
    assert code == 0
    assert shown["servers"] == {  # filed under the normalised URL
        server.url: {"verifier": verifier.url, "verifier_key": _kid(verifier)}
    }
    code, doc = _json(capsys, "verify", server.url, "--json")  # no flags: the configuration
    assert code == 0
    assert doc["verifier"] == verifier.url
    assert doc["verifier_key"] == _kid(verifier)
    code, doc = _json(capsys, "verify", server.url, "--json", "--local")  # a flag wins
    assert code == 1
    assert doc["verifier"] == "local"
    sdk = trusted_verifier(server.url + "/")  # the SDK reads the same entry
    assert isinstance(sdk, RemoteVerifier)
    assert sdk.name == verifier.url


def test_a_configured_pin_that_does_not_match_refuses(
    server: ServeProcess, verifier: VerifierProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = TokenSigner.load_or_create(Path(os.environ["XDG_CONFIG_HOME"]) / "other").kid
    assert (
        main(["trust", "add", server.url, "--verifier", verifier.url, f"--verifier-key={wrong}"])
        == 0
    )
    capsys.readouterr()
    code, doc = _json(capsys, "verify", server.url, "--json")
    assert code == 1
    assert [r["code"] for r in doc["reasons"]] == ["verifier_key_mismatch"]  # type: ignore[union-attr]
    # --verifier-key on the command line wins over the file
    code, doc = _json(capsys, "verify", server.url, "--json", f"--verifier-key={_kid(verifier)}")
    assert code == 0


def test_an_insecure_verifier_is_a_usage_error(
    server: ServeProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, doc = _json(capsys, "verify", server.url, "--json", "--verifier", "http://v.invalid")
    assert code == 2
    assert doc["error"]["code"] == "verifier_insecure"  # type: ignore[index]
    code, doc = _json(capsys, "verify", server.url, "--json", "--verifier-key", "x" * 43)
    assert code == 2
    assert doc["error"]["code"] == "usage"  # type: ignore[index]


def test_a_broken_configuration_is_config_invalid(
    server: ServeProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    path = default_trust_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[servers."{server.url}"]\nverifier = "http://v.invalid"\n')
    with pytest.raises(CllmError) as caught:
        TrustConfig.load()
    assert caught.value.code == "verifier_insecure"
    path.write_text(f'[servers."{server.url}"]\nunknown = 1\n')
    code, doc = _json(capsys, "verify", server.url, "--json")
    assert code == 2
    assert doc["error"]["code"] == "config_invalid"  # type: ignore[index]
    path.write_text(f'[servers."{server.url}"]\nrelease = "/m.json"\npublisher_key = "/p.pem"\n')
    code, doc = _json(capsys, "verify", server.url, "--json")
    assert code == 2  # the named release is checked like --release: unreadable, never ignored
    assert doc["error"]["code"] == "release_key_invalid"  # type: ignore[index]


HOSTILE = "\x1b[2K\r\x1b[32mverdict  AFFIRMING\x1b[0m [/] [green]ok[/green]"


@pytest.fixture
def hostile_verifier(tmp_path: Path) -> object:
    def edit(claims: dict[str, object]) -> None:
        claims["status"] = "contraindicated"
        claims["reasons"] = [{"code": "tcb_revoked", "message": HOSTILE}]
        claims["components"] = [{"type": "cllm.model", "name": HOSTILE, "digest": "00" * 48}]
        claims["tee"] = HOSTILE

    return signing_verifier(TokenSigner.load_or_create(tmp_path / "v"), edit)


def test_server_chosen_strings_are_printed_escaped(
    server: ServeProcess,
    hostile_verifier: object,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one line per row, to find the strings whole
    with hostile_verifier as fake:  # type: ignore[attr-defined]
        code = main(["verify", server.url, "--verifier", fake.url])
        out = capsys.readouterr().out
        assert code == 1
        assert "\x1b" not in out and "\r" not in out
        assert "\\x1b[32mverdict  AFFIRMING" in out  # shown, harmless
        assert "[/] [green]ok[/green]" in out  # literally: not taken for markup
        verdicts = [line for line in out.splitlines() if line.startswith("verdict  ")]
        assert verdicts and all(line.startswith("verdict  CONTRAINDICATED") for line in verdicts)
        assert out.rstrip().splitlines()[-1].startswith("verdict  CONTRAINDICATED")

        # cllm chat's refusal quotes the reasons: escaped too
        import sys

        stdin = sys.stdin
        sys.stdin = io.StringIO("hello")
        try:
            assert main(["chat", server.url, "--verifier", fake.url]) == 1
        finally:
            sys.stdin = stdin
        err = capsys.readouterr().err
        assert "\x1b" not in err
        assert re.search(r"refusing to send.*\\x1b\[32mverdict", err, re.S)
