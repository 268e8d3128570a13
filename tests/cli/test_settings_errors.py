"""Service settings refused at start: exit 2 with ``[config_invalid]`` and the flag's name,
never a traceback (the settings model checks ranges; the CLI names the flag)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cllm.cli import main


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["serve", "--threads", "0"], "--threads"),
        (["serve", "--stream-interval-ms", "-1"], "--stream-interval-ms"),
        (["serve", "--stream-interval-ms", "nan"], "--stream-interval-ms"),
        (["serve", "--port", "70000"], "--port"),
        (["verifier", "serve", "--port", "70000"], "--port"),
        (["verifier", "serve", "--workers", "0"], "--workers"),
    ],
)
def test_bad_settings_exit_2_naming_the_flag(
    argv: list[str], flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*argv, "--state-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 2
    assert f"[config_invalid] {flag}:" in " ".join(out.split())
    assert "Traceback" not in out
