"""The ``cllm`` command line: one entry point with subcommands. The CLI configures logging;
the library never does."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, cast

from cllm import __version__

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["main"]

# Each command: the module that registers (and runs) it, and its one-line help. Only the module of
# the command being run is imported, so a one-shot command pays for what it uses and `cllm --help`
# for nothing; the other commands are listed from this table (a test keeps it equal to the
# modules' own help).
COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "quote": ("_quote", "parse and verify DCAP quotes offline"),
    "gpu": ("_gpu", "parse and verify NVIDIA GPU attestation evidence"),
    "measure": (
        "_measure",
        "compute the events and RTMR3 `cllm serve` extends, offline (reference values)",
    ),
    "eventlog": ("_measure", "event logs: replay to RTMR values"),
    "tee": ("_tee", "the TEE backend: info, evidence, simulation root"),
    "evidence": ("_tee", "evidence documents"),
    "verifier": ("_verifier", "the attestation service"),
    "serve": (
        "_serve",
        "the confidential inference server (OpenAI + Ollama APIs, attestation, UI)",
    ),
    "verify": ("_client", "verify a cllm server: evidence, DCAP, measurements, policy"),
    "chat": ("_client", "verify a cllm server, then chat end-to-end encrypted"),
    "proxy": (
        "_proxy",
        "a local gateway: verify a cllm server, then offer its OpenAI and Ollama APIs "
        "and the web UI on this machine, end-to-end encrypted",
    ),
    "trust": ("_trust", "your trust configuration: how each server is verified"),
    "release": (
        "_release",
        "signed release manifests: the reference values a publisher vouches for",
    ),
}


def _chosen(argv: Sequence[str]) -> str | None:
    """The command named on the command line (the first argument that is not an option)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _terminal_width() -> int:
    """What ``shutil.get_terminal_size`` gives, without importing shutil (which loads the bz2
    and lzma extension modules): argparse asks for it on every ``add_argument``."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class _Formatter(argparse.HelpFormatter):
    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        width = _terminal_width() - 2 if width is None else width
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    """argparse's parser with ``_Formatter`` as the default; subcommands' parsers are of the
    same class (``add_subparsers`` uses ``type(self)``), so they inherit it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``only``, just that command's module is imported (none for a name
    that is not a command). The other commands are listed by name and help alone, and only when
    the command line names no command of the table (to list them or refuse the name)."""
    parser = _Parser(
        prog="cllm",
        description="Confidential LLM inference with remote attestation (Intel TDX).",
    )
    parser.add_argument("--version", action="version", version=f"cllm {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = [module for name, (module, _) in COMMANDS.items() if only in (None, name)]
    for module in dict.fromkeys(wanted):
        importlib.import_module(f"cllm.cli.{module}").register(commands)
    if only not in COMMANDS:
        for name, (_, help_text) in COMMANDS.items():
            if name not in commands.choices:
                commands.add_parser(name, help=help_text)
    return parser


class _LazyConsole:
    """rich's Console, made on first use, for commands run with ``--json``: they print JSON
    only, so they never load rich (a large part of a one-shot command's start-up). Without
    ``--json`` commands get a real Console, which rich's own widgets require."""

    def __init__(self) -> None:
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console()
        return getattr(self._console, name)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    chosen = _chosen(arguments)
    args = build_parser(only=chosen if chosen in COMMANDS else "").parse_args(arguments)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if getattr(args, "json", False):
        return int(args.handler(args, cast("Console", _LazyConsole())))
    from rich.console import Console

    return int(args.handler(args, Console()))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
