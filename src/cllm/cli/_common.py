"""Helpers shared by the subcommands: exit codes, file reading, output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cllm.errors import CllmError

if TYPE_CHECKING:
    from pydantic import ValidationError
    from rich.console import Console

__all__ = [
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_UNUSABLE",
    "hex_bytes",
    "print_json",
    "read_file",
    "report_error",
    "require_extra",
    "settings_error",
]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_UNUSABLE = 2


def read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CllmError(
            f"cannot read {what} {path}: {exc.strerror}", code="file_unreadable"
        ) from exc


def require_extra(extra: str, *modules: str) -> None:
    """Refuse, naming the extra to install, when a command's optional dependencies are absent
    (the plain install is the client and the verification commands only)."""
    import importlib.util

    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        raise CllmError(
            f"this command needs the [{extra}] extra ({', '.join(missing)} not installed): "
            f"pip install 'confidential-llm[{extra}]'",
            code="extra_missing",
        )


def settings_error(exc: ValidationError) -> CllmError:
    """A service's settings refused by pydantic, named by the flag that set them."""
    first = exc.errors(include_url=False)[0]
    flag = "--" + "-".join(str(part) for part in first["loc"]).replace("_", "-")
    return CllmError(f"{flag}: {first['msg']}", code="config_invalid")


def print_json(doc: object) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def report_error(error: CllmError, *, as_json: bool, console: Console) -> int:
    """Print ``{"error": {code, message}}`` (or a line) and return the unusable-input code."""
    if as_json:
        print_json({"error": {"code": error.code, "message": error.message}})
    else:
        # Escaped: rich would take "[code]" for markup and drop it; messages can quote what
        # a server or a verifier sent, so control characters are escaped too.
        from rich.markup import escape

        from cllm.cli._text import outside

        console.print(f"[red]error[/red] {escape(outside(f'[{error.code}] {error.message}'))}")
    return EXIT_UNUSABLE


def hex_bytes(size: int) -> Callable[[str], bytes]:
    """argparse type: exactly ``size`` bytes given as hex."""

    def parse(text: str) -> bytes:
        try:
            value = bytes.fromhex(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not hex") from exc
        if len(value) != size:
            raise argparse.ArgumentTypeError(f"expected {size} bytes, got {len(value)}")
        return value

    return parse
