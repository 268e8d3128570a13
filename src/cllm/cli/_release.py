"""``cllm release keygen|create|verify``: signed release manifests (docs/release.md)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text

from cllm import __version__
from cllm._internal.files import publish_file
from cllm.cli._common import (
    EXIT_OK,
    EXIT_REJECTED,
    print_json,
    read_file,
    report_error,
)
from cllm.errors import CllmError, ReleaseError
from cllm.measure import START_EVENT_TYPE
from cllm.release import (
    BOOT_REGISTERS,
    create_release,
    generate_publisher_key,
    load_private_key,
    load_publisher_key,
    parse_release,
)

__all__ = ["register"]

# Invalid (exit 1): the manifest is well-formed but not the publisher's. Unusable (exit 2):
# everything else (unreadable, malformed, not a key).
_INVALID = frozenset({"release_bad_signature", "release_wrong_publisher"})


def _cmd_keygen(args: argparse.Namespace, console: Console) -> int:
    private, public = generate_publisher_key()
    key_path, public_path = Path(args.out), Path(args.public_out or f"{args.out}.pub")
    try:
        if not publish_file(key_path, private, replace=False):
            raise CllmError(f"{key_path} exists: not overwritten", code="file_exists")
        publish_file(public_path, public, replace=True)
        os.chmod(public_path, 0o644)  # public: anyone may read it
    except OSError as exc:
        error = CllmError(f"cannot write the key: {exc.strerror}", code="file_unwritable")
        return report_error(error, as_json=False, console=console)
    except CllmError as exc:
        return report_error(exc, as_json=False, console=console)
    console.print(Text(f"publisher key {key_path} (keep it private), public key {public_path}"))
    return EXIT_OK


def _cmd_create(args: argparse.Namespace, console: Console) -> int:
    from cllm.cli._measure import measure_events

    try:
        key = load_private_key(read_file(args.key, "signing key"))
        boot = {
            register: value.lower()
            for register in BOOT_REGISTERS
            if (value := getattr(args, register)) is not None
        }
        events = measure_events(args, show_progress=not args.json) if not args.boot_only else ()
        manifest = create_release(
            name=args.name,
            version=args.version,
            created=int(time.time()) if args.created is None else args.created,
            components=[event for event in events if event.type != START_EVENT_TYPE],
            boot=boot,
            key=key,
        )
        Path(args.out).write_bytes(manifest)
        count = sum(1 for event in events if event.type != START_EVENT_TYPE)
    except CllmError as exc:
        return report_error(exc, as_json=args.json, console=console)
    except OSError as exc:
        error = CllmError(f"cannot write {args.out}: {exc.strerror}", code="file_unwritable")
        return report_error(error, as_json=args.json, console=console)
    if args.json:
        print_json({"manifest": args.out, "components": count, "boot": sorted(boot)})
    else:
        console.print(
            Text(f"release {args.name} {args.version}: {count} components, ")
            + Text(f"boot registers {sorted(boot) or 'none'}, written to {args.out}")
        )
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace, console: Console) -> int:
    try:
        key = load_publisher_key(Path(args.publisher_key))
        raw = read_file(args.manifest, "release manifest")
        release = parse_release(raw, publisher_key=key)
    except ReleaseError as exc:
        if exc.code in _INVALID:
            if args.json:
                print_json({"valid": False, "error": {"code": exc.code, "message": exc.message}})
            else:
                console.print(Text(f"INVALID [{exc.code}] {exc.message}", style="bold red"))
            return EXIT_REJECTED
        return report_error(exc, as_json=args.json, console=console)
    except CllmError as exc:
        return report_error(exc, as_json=args.json, console=console)
    doc = {
        "valid": True,
        **release.summary(),
        "pins": {
            "boot": dict(release.boot),
            "components": [
                {"type": e.type, "name": e.name, "digest": e.digest.hex()}
                for e in release.components
            ],
        },
    }
    if args.json:
        print_json(doc)
    else:
        console.print(
            Text(f"valid: release {release.name} {release.version}", style="bold green")
            + Text(f", signed by publisher key sha256:{release.publisher.sha256}")
        )
        for register, value in release.boot.items():
            console.print(Text(f"  {register} {value}"))
        for event in release.components:
            console.print(Text(f"  {event.type} {event.name} sha384:{event.digest.hex()}"))
    return EXIT_OK


def _hex48(text: str) -> str:
    value = text.lower()
    if len(value) != 96 or any(c not in "0123456789abcdef" for c in value):
        raise argparse.ArgumentTypeError("expected 48 bytes of hex")
    return value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from cllm.cli._measure import add_measure_inputs

    release = commands.add_parser(
        "release", help="signed release manifests: the reference values a publisher vouches for"
    )
    actions = release.add_subparsers(dest="release_command", metavar="ACTION", required=True)

    keygen = actions.add_parser("keygen", help="a new Ed25519 publisher key pair")
    keygen.add_argument("--out", required=True, metavar="KEY_PEM", help="private key (0600)")
    keygen.add_argument("--public-out", metavar="PUB_PEM", help="default: KEY_PEM.pub")
    keygen.set_defaults(handler=_cmd_keygen)

    create = actions.add_parser(
        "create",
        help="measure a release (as `cllm measure`) and sign its manifest",
        description="Measure the components exactly as `cllm measure` does (same inputs), add "
        "optional boot-chain values, and sign the manifest with the publisher's Ed25519 key.",
    )
    create.add_argument("--out", required=True, metavar="MANIFEST")
    create.add_argument("--key", required=True, metavar="PUBLISHER_PEM", help="Ed25519 key")
    create.add_argument("--name", default="cllm", help="release name (default: cllm)")
    create.add_argument("--version", default=__version__, help="release version")
    create.add_argument("--created", type=int, metavar="UNIX_SECONDS", help=argparse.SUPPRESS)
    add_measure_inputs(create)
    for register_name in BOOT_REGISTERS:
        create.add_argument(
            f"--{register_name}",
            type=_hex48,
            metavar="HEX",
            help=f"pin {register_name.upper()} (48 bytes of hex)",
        )
    create.add_argument(
        "--boot-only", action="store_true", help="pin the boot registers only, no components"
    )
    create.add_argument("--json", action="store_true", help="machine-readable output")
    create.set_defaults(handler=_cmd_create)

    verify = actions.add_parser(
        "verify",
        help="check a manifest's signature under a publisher key",
        description="Exit 0 valid, 1 invalid (not signed by this publisher), 2 unusable.",
    )
    verify.add_argument("manifest", metavar="MANIFEST")
    verify.add_argument("--publisher-key", required=True, metavar="PUB_PEM")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(handler=_cmd_verify)
