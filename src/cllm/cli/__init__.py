"""The ``cllm`` command line: one entry point with subcommands. The CLI configures logging;
the library never does."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rich.console import Console

from cllm import __version__
from cllm.cli import _client, _measure, _quote, _release, _serve, _tee, _verifier

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cllm",
        description="Confidential LLM inference with remote attestation (Intel TDX).",
    )
    parser.add_argument("--version", action="version", version=f"cllm {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _quote.register(commands)
    _measure.register(commands)
    _tee.register(commands)
    _verifier.register(commands)
    _serve.register(commands)
    _client.register(commands)
    _release.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.handler(args, Console()))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
