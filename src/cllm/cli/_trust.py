"""``cllm trust add URL ...`` / ``cllm trust show [URL]``: the user's trust configuration
(cllm.client._trust), and ``apply_trust``, which lays it under the verification flags of
``cllm verify``, ``cllm chat`` and ``cllm proxy`` (a flag given wins)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from cllm.cli._common import EXIT_OK, EXIT_UNUSABLE, print_json, report_error
from cllm.cli._text import outside_text
from cllm.client import (
    TrustConfig,
    TrustEntry,
    check_verifier_url,
    normalise_server_url,
    parse_verifier_key,
)
from cllm.errors import CllmError

__all__ = ["apply_trust", "register"]

_LOCAL_ONLY = (
    "policy",
    "trust_simulated_root",
    "trust_simulated_gpu_root",
    "collateral_dir",
    "pccs_url",
)
_RESERVED = ("release", "publisher_key")  # cllm verify --release / --publisher-key


def apply_trust(args: argparse.Namespace, *, config: TrustConfig | None = None) -> None:
    """Fill the verification flags the user did not give from the trust entry for
    ``args.url``. The verifier mode comes from the flags when they choose one (``--verifier``
    or ``--local``); the entry's verifier key applies only to the entry's own verifier."""
    entry = (config or TrustConfig.load()).for_url(args.url)
    if entry is None:
        return
    remote = bool(args.verifier) or (not args.local and entry.verifier is not None)
    if remote:
        if not args.verifier:
            args.verifier = entry.verifier
        same = entry.verifier is not None and check_verifier_url(args.verifier) == (
            check_verifier_url(entry.verifier)
        )
        if same and not args.verifier_key and entry.verifier_key:
            args.verifier_key = entry.verifier_key
        if same and args.policy_id == "default" and entry.policy_id:
            args.policy_id = entry.policy_id
    else:
        for name in _LOCAL_ONLY:
            if getattr(args, name, None) is None and getattr(entry, name) is not None:
                setattr(args, name, getattr(entry, name))
    if entry.strict and not args.strict:
        args.strict = True
    if remote:
        return  # release manifests are checked by the local verifier only
    for name in _RESERVED:
        value = getattr(entry, name)
        if value is None:
            continue
        if not hasattr(args, name):
            raise CllmError(
                f"the trust configuration names a {name} for {entry.url}, which this cllm "
                "cannot check yet (it needs `cllm verify --release`)",
                code="config_invalid",
            )
        if getattr(args, name) is None:
            setattr(args, name, value)


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def _fetch_pin(verifier: str, console: Console) -> str:
    """The thumbprint of the verifier's one current key, fetched now (trust on first use,
    printed so that the user can compare it with what the verifier's operator publishes)."""
    import httpx

    from cllm.client import jwks_thumbprints

    try:
        response = httpx.get(f"{verifier}/.well-known/jwks.json", timeout=30)
        response.raise_for_status()
        found = sorted(set(jwks_thumbprints(response.json()).values()))
    except (httpx.HTTPError, ValueError) as exc:
        raise CllmError(
            f"cannot fetch the verifier's key from {verifier}: {type(exc).__name__}; pin it "
            "with --verifier-key",
            code="verifier_unreachable",
        ) from exc
    if len(found) != 1:
        raise CllmError(
            f"the verifier publishes {len(found)} usable keys; choose one with --verifier-key",
            code="verifier_key_invalid",
        )
    console.print(
        Text("pinned the verifier's current key ")
        + outside_text(found[0], style="bold")
        + Text(": compare it with the thumbprint its operator publishes")
    )
    return found[0]


def _cmd_add(args: argparse.Namespace, console: Console) -> int:
    try:
        url = normalise_server_url(args.url)
        verifier = check_verifier_url(args.verifier) if args.verifier else None
        if args.verifier_key and verifier is None:
            raise CllmError("--verifier-key pins a --verifier's key", code="usage")
        pin = parse_verifier_key(args.verifier_key) if args.verifier_key else None
        if verifier is not None and pin is None and not args.no_pin:
            pin = _fetch_pin(verifier, console)
        fields: dict[str, Any] = {
            "verifier": verifier,
            "verifier_key": pin,
            "policy_id": args.policy_id,
            "policy": _absolute(args.policy),
            "trust_simulated_root": _absolute(args.trust_simulated_root),
            "trust_simulated_gpu_root": _absolute(args.trust_simulated_gpu_root),
            "collateral_dir": _absolute(args.collateral_dir),
            "pccs_url": args.pccs_url,
            "strict": True if args.strict else None,
            "release": _absolute(args.release),
            "publisher_key": _absolute(args.publisher_key),
        }
        entry = TrustEntry(url=url, **fields)
        config = TrustConfig.load(args.trust_file)
        config.with_entry(entry).save()
    except CllmError as exc:
        return report_error(exc, as_json=False, console=console)
    console.print(Text("saved ") + outside_text(url) + Text(" in ") + outside_text(config.path))
    return EXIT_OK


def _cmd_show(args: argparse.Namespace, console: Console) -> int:
    try:
        config = TrustConfig.load(args.trust_file)
        entries = config.entries
        if args.url:
            entry = config.for_url(args.url)
            entries = {entry.url: entry} if entry else {}
    except CllmError as exc:
        return report_error(exc, as_json=args.json, console=console)
    if args.json:
        print_json(
            {"path": str(config.path), "servers": {u: e.settings() for u, e in entries.items()}}
        )
        return EXIT_OK if entries or not args.url else EXIT_UNUSABLE
    console.print(Text("trust configuration ") + outside_text(config.path))
    if not entries:
        console.print("no servers configured" if not args.url else "no entry for this server")
        return EXIT_OK if not args.url else EXIT_UNUSABLE
    for url, entry in sorted(entries.items()):
        console.print(outside_text(url, style="bold"))
        settings = entry.settings()
        if "verifier" not in settings:
            console.print("  verifier = local (this machine)")
        for name, value in settings.items():
            console.print(Text(f"  {name} = ") + outside_text(value))
    return EXIT_OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trust = commands.add_parser(
        "trust",
        help="your trust configuration: how each server is verified",
        description="Per server URL, which verifier (and its pinned key) or which local "
        "policy decides whether the server is genuine. Read by cllm verify, cllm chat, cllm "
        "proxy and the SDK; their flags override it. File: $XDG_CONFIG_HOME/cllm/trust.toml.",
    )
    verbs = trust.add_subparsers(dest="verb", metavar="VERB", required=True)
    add = verbs.add_parser("add", help="add or replace a server's entry")
    add.add_argument("url", help="the cllm server, e.g. https://llm.example.com")
    add.add_argument("--verifier", metavar="URL", help="a verifier service (default: local)")
    add.add_argument(
        "--verifier-key",
        metavar="JWK_OR_PEM",
        help="the verifier's token key (thumbprint, PEM or JWK); default: its current key",
    )
    add.add_argument(
        "--no-pin", action="store_true", help="--verifier: do not pin its key (not advised)"
    )
    add.add_argument("--policy-id", help="--verifier: the service's policy id")
    add.add_argument("--policy", metavar="FILE", help="local: appraisal policy (TOML)")
    add.add_argument("--trust-simulated-root", metavar="PEM_FILE", help="local: simulated root")
    add.add_argument(
        "--trust-simulated-gpu-root", metavar="PEM_FILE", help="local: simulated GPU roots"
    )
    add.add_argument("--collateral-dir", metavar="DIR", help="local: offline collateral")
    add.add_argument("--pccs-url", metavar="URL", help="local: PCCS or Intel PCS")
    add.add_argument("--strict", action="store_true", help="treat 'warning' as a failure")
    add.add_argument("--release", metavar="MANIFEST", help="a signed release manifest")
    add.add_argument("--publisher-key", metavar="PUB_PEM", help="the manifest publisher's key")
    add.set_defaults(handler=_cmd_add)
    show = verbs.add_parser("show", help="print the configuration (or one server's entry)")
    show.add_argument("url", nargs="?", help="only this server")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=_cmd_show)
    for verb in (add, show):
        verb.add_argument("--trust-file", type=Path, default=None, help=argparse.SUPPRESS)
