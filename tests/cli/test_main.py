"""The entry point imports only the module of the command being run (a one-shot command pays
for what it uses; ``cllm --help`` for nothing heavy), and lists every command with the same help
its module gives it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cllm.cli import COMMANDS, build_parser

# Loaded by a command's module when it runs, never by the entry point itself.
_HEAVY = ("rich", "httpx", "pydantic", "fastapi", "llama_cpp", "cryptography", "cllm.verify")


def _modules_after(argv: list[str]) -> set[str]:
    """The modules loaded by ``main(argv)`` in a fresh interpreter (it exits through argparse)."""
    script = (
        "import json, sys\n"
        "from cllm.cli import main\n"
        "try:\n    main(json.loads(sys.argv[1]))\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(argv)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(done.stderr.splitlines()[-1]))


def _loaded(modules: set[str], package: str) -> bool:
    return any(name == package or name.startswith(package + ".") for name in modules)


def test_help_lists_every_command_and_loads_nothing_heavy() -> None:
    modules = _modules_after(["--help"])
    assert [m for m in _HEAVY if _loaded(modules, m)] == []
    assert not any(name.startswith("cllm.cli._") for name in modules)


@pytest.mark.parametrize(("command", "module"), [("quote", "_quote"), ("measure", "_measure")])
def test_a_command_loads_its_own_module_only(command: str, module: str) -> None:
    modules = _modules_after([command, "--help"])
    loaded = {name for name in modules if name.startswith("cllm.cli._")}
    assert loaded <= {f"cllm.cli.{module}", "cllm.cli._common"}
    assert f"cllm.cli.{module}" in loaded


def test_the_table_gives_each_command_its_modules_own_help() -> None:
    parser = build_parser()  # every module registered
    commands = next(
        action for action in parser._actions if action.dest == "command"
    )  # argparse keeps subparsers as an action
    helps = {choice.dest: choice.help for choice in commands._choices_actions}
    assert helps == {name: help_text for name, (_, help_text) in COMMANDS.items()}


def test_an_unknown_command_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    from cllm.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err


def test_quote_verify_json_loads_neither_rich_nor_httpx_nor_the_simulator(tmp_path: Path) -> None:
    # One-shot verification is what a CLI user or a CI job pays every time (bench/cli.py).
    modules = _modules_after(["quote", "verify", str(tmp_path / "absent.bin"), "--json"])
    assert "cllm.cli._quote" in modules
    assert [m for m in ("rich", "httpx", "cllm.tee", "fastapi") if _loaded(modules, m)] == []
