"""``cllm verify URL`` and ``cllm chat URL``: the user's own client, which verifies before it
speaks."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cllm.cli._common import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNUSABLE,
    print_json,
    read_file,
    report_error,
)
from cllm.cli._gpu_view import gpu_note, print_gpus
from cllm.cli._text import outside, outside_text
from cllm.errors import ApiError, AttestationError, CllmError, CryptoError
from cllm.policy import Policy, Status, parse_policy

if TYPE_CHECKING:
    from cllm.client import Client, Verification, Verifier

__all__ = ["register"]


def _verifier(args: argparse.Namespace) -> Verifier:
    from cllm.cli._trust import apply_trust
    from cllm.client import LocalVerifier, RemoteVerifier, parse_verifier_key

    apply_trust(args)  # the user's trust configuration for this server, under the flags
    if args.verifier_key and not args.verifier:
        raise CllmError("--verifier-key pins a --verifier's key", code="usage")
    if args.verifier:
        if (
            args.policy
            or args.collateral_dir
            or args.trust_simulated_root
            or args.release
            or args.trust_simulated_gpu_root
        ):
            raise CllmError(
                "--policy, --release, --collateral-dir, --trust-simulated-root and "
                "--trust-simulated-gpu-root are for --local; a verifier service uses its own "
                "(choose its policy with --policy-id)",
                code="usage",
            )
        pin = parse_verifier_key(args.verifier_key) if args.verifier_key else None
        return RemoteVerifier(args.verifier, policy_id=args.policy_id, key_pin=pin)
    if bool(args.release) != bool(args.publisher_key):
        raise CllmError("--release and --publisher-key go together", code="usage")
    policy: Policy | None = None
    if args.policy:
        policy = parse_policy(
            read_file(args.policy, "policy"),
            policy_id=Path(args.policy).stem,
            base_dir=Path(args.policy).parent,
        )
    return LocalVerifier(
        policy=policy,
        release=Path(args.release) if args.release else None,
        publisher_key=Path(args.publisher_key) if args.publisher_key else None,
        trust_simulated_root=Path(args.trust_simulated_root) if args.trust_simulated_root else None,
        collateral_dir=Path(args.collateral_dir) if args.collateral_dir else None,
        pccs_url=args.pccs_url,
        trust_simulated_gpu_root=(
            Path(args.trust_simulated_gpu_root) if args.trust_simulated_gpu_root else None
        ),
    )


_COLOURS = {Status.AFFIRMING: "green", Status.WARNING: "yellow", Status.CONTRAINDICATED: "red"}


def _report(console: Console, result: Verification, *, url: str) -> None:
    claims = result.claims
    colour = _COLOURS[result.status]
    verdict = Text(result.status.upper(), style=f"bold {colour}")
    if result.simulated:
        verdict.append("  (simulated TD: not hardware evidence)", style="yellow")
    if gpu_note(result):
        verdict.append(f"  {gpu_note(result)}", style="yellow")
    console.print(Text("server   ") + outside_text(url))
    console.print(Text("verdict  ") + verdict)
    console.print(
        Text("verifier ") + outside_text(f"{result.verifier}, checked at {result.checked_at}")
    )
    if result.verifier_key:
        console.print(Text("verifier key ") + outside_text(result.verifier_key))
    for reason in result.reasons:
        console.print(outside_text(f"  - {reason.code}: {reason.message}", style=colour))
    tls = result.tls or {}
    if tls and not tls.get("ends_in_td"):
        console.print(Text("TLS      ") + outside_text(tls.get("note", ""), style="yellow"))
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")

    def row(name: str, value: object) -> None:
        table.add_row(name, outside_text(value))

    typed = result.typed_claims  # cllm.appraisal.Claims: what the verdict established
    row("TEE", typed.tee)
    tcb = typed.tcb
    row("TCB status", tcb.status if tcb else None)
    row("advisories", ", ".join(tcb.advisory_ids) if tcb and tcb.advisory_ids else "none")
    row("collateral expires", tcb.collateral_expires if tcb else None)
    td = typed.td.model_dump() if typed.td is not None else {}
    for name in (
        "mrtd",
        "rtmr0",
        "rtmr1",
        "rtmr2",
        "rtmr3",
        "mr_seam",
        "td_attributes",
        "xfam",
        "debug",
        "mrservicetd",
        "mrconfigid",
        "mrowner",
        "mrownerconfig",
    ):
        if name in td:
            row(name, td[name])
    for component in typed.components:
        table.add_row(
            outside_text(component.type),
            outside_text(f"{component.name}  sha384:{component.digest}"),
        )
    keys = typed.keys
    for name in ("signing_key", "hpke_key", "tls_spki_sha256"):
        row(name, getattr(keys, name) if keys is not None else None)
    policy = typed.policy
    row("policy", f"{policy and policy.id} (sha256 {policy and policy.sha256})")
    # Text, not markup, control characters escaped: these carry server-chosen strings.
    row("software", describe_reference(claims.get("reference")))
    row("prompts go to", describe_upstream(result.upstream))
    console.print(table)
    print_gpus(console, result)
    # Last, after everything the server or verifier chose: the verdict once more, so nothing
    # printed above can leave a different last word on the screen.
    console.print(Text("verdict  ") + verdict.copy())


def describe_reference(reference: object) -> str:
    """What the verdict says about the software, in words: pinned by which release (and whose
    key), by the policy, or not at all."""
    if not isinstance(reference, dict):
        return "not appraised"
    pinned = [
        what
        for what, key in (("boot chain", "boot_chain"), ("every component", "components"))
        if reference.get(key) is True
    ]
    releases = [
        f"release {r.get('name')} {r.get('version')} signed by publisher key "
        f"sha256:{str(r.get('publisher_key_sha256'))[:16]}…"
        for r in reference.get("releases") or []
        if isinstance(r, dict)
    ]
    if not pinned:
        return "NOT PINNED: no reference values, so which software runs was not checked"
    by = "; ".join(releases) if releases else "the policy's own reference values"
    return f"pinned ({', '.join(pinned)}) by {by}"


def describe_upstream(upstream: Mapping[str, Any]) -> str:
    scope = upstream.get("scope")
    if scope == "embedded":
        return "the embedded engine, inside the TD"
    if scope == "loopback":
        return "an engine on the TD's loopback interface, inside the TD"
    if scope == "remote":
        return f"REMOTE host {str(upstream.get('host'))[:255]}, outside the TD"
    return "unknown (the measured configuration does not say)"


def _exit_code(status: str, *, strict: bool) -> int:
    if status == "affirming":
        return EXIT_OK
    if status == "warning":
        return EXIT_REJECTED if strict else EXIT_OK
    return EXIT_REJECTED


def _cmd_verify(args: argparse.Namespace, console: Console) -> int:
    import httpx

    from cllm.client import attest

    try:
        verifier = _verifier(args)
    except CllmError as exc:
        return report_error(exc, as_json=args.json, console=console)
    progress = console.status("verifying…", spinner="dots") if not args.json else _nothing()
    with httpx.Client(base_url=args.url.rstrip("/"), timeout=args.timeout) as server, progress:
        result = attest(server, verifier)
    if args.json:
        print_json(result.to_json())
    else:
        _report(console, result, url=args.url)
        if result.status == "warning":
            console.print(
                Text("WARNING: ", style="bold yellow")
                + Text("the server verified only with warnings (see reasons above)")
            )
    return _exit_code(result.status, strict=args.strict)


class _nothing:  # noqa: N801 - a no-op context manager
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _cmd_chat(args: argparse.Namespace, console: Console) -> int:
    from cllm.client import Client

    try:
        verifier = _verifier(args)
    except CllmError as exc:
        return report_error(exc, as_json=False, console=console)
    err = Console(stderr=True)
    client = Client(
        args.url, verifier=verifier, allow_warning=not args.strict, api_key=args.api_key
    )
    with client:
        result = client.verify()
        if args.verbose_report:
            _report(err, result, url=args.url)
        refused = not result.permits(allow_warning=not args.strict)
        if refused:
            reasons = "; ".join(f"{r.code}: {r.message}" for r in result.reasons) or result.status
            why = outside_text(f"the server did not verify ({reasons})")
            if not args.unprotected:
                err.print(Text("refusing to send", style="bold red") + Text(": ") + why)
                err.print("use --unprotected to talk to it anyway, knowingly")
                return EXIT_REJECTED
            err.print(
                Text("UNPROTECTED", style="bold red")
                + Text(": ")
                + why
                + Text("; sending in plaintext to unverified keys because --unprotected was given")
            )
            return _chat_unprotected(args, err)
        colour = _COLOURS[result.status]
        note = " (simulated TD)" if result.simulated else ""
        note += f" {gpu_note(result)}" if gpu_note(result) else ""
        err.print(
            Text(f"verified: {result.status}{note}", style=colour)
            + Text("; messages are end-to-end encrypted")
        )
        err.print(Text("software: " + describe_reference(result.claims.get("reference"))))
        err.print(Text("prompts go to: " + describe_upstream(result.upstream)))
        return _converse(client, args, err)


def _converse(client: Client, args: argparse.Namespace, err: Console) -> int:
    history: list[dict[str, str]] = []
    if args.system:
        history.append({"role": "system", "content": args.system})
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            try:
                prompt = input("you> ")
            except EOFError:
                return EXIT_OK
            if not prompt.strip():
                continue
        else:
            prompt = sys.stdin.read()
            if not prompt.strip():
                err.print("[red]nothing to send on stdin[/red]")
                return EXIT_UNUSABLE
        history.append({"role": "user", "content": prompt})
        parts: list[str] = []
        try:
            for chunk in client.chat.completions.create(
                messages=history, model=args.model, stream=True, max_tokens=args.max_tokens
            ):
                sys.stdout.write(outside(chunk.content, keep_newlines=True))
                sys.stdout.flush()
                parts.append(chunk.content)
        except (ApiError, CryptoError, AttestationError) as exc:
            sys.stdout.write("\n")
            err.print(
                Text("error", style="red") + Text(" ") + outside_text(f"[{exc.code}] {exc.message}")
            )
            return EXIT_REJECTED
        sys.stdout.write("\n")
        history.append({"role": "assistant", "content": "".join(parts)})
        if not interactive:
            return EXIT_OK


def _chat_unprotected(args: argparse.Namespace, err: Console) -> int:
    """``--unprotected``: plain OpenAI API, no verification, no encryption; said loudly."""
    import httpx

    prompt = sys.stdin.read() if not sys.stdin.isatty() else input("you (UNPROTECTED)> ")
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": args.max_tokens}
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    with httpx.Client(base_url=args.url.rstrip("/"), timeout=600, headers=headers) as http:
        models = http.get("/v1/models").json()["data"]
        body["model"] = args.model or models[0]["id"]
        response = http.post("/v1/chat/completions", json=body)
    if response.status_code != 200:
        err.print(
            Text("error", style="red")
            + outside_text(f" HTTP {response.status_code}: {response.text[:300]}")
        )
        return EXIT_REJECTED
    answer = json.loads(response.content)["choices"][0]["message"]["content"]
    sys.stdout.write(outside(answer, keep_newlines=True) + "\n")
    return EXIT_OK


def _add_verification_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the cllm server, e.g. http://127.0.0.1:8080")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--verifier", metavar="URL", help="a verifier service (its token is checked here)"
    )
    where.add_argument("--local", action="store_true", help="verify in this process (the default)")
    parser.add_argument(
        "--verifier-key",
        metavar="JWK_OR_PEM",
        help="--verifier: pin its token key (RFC 7638 thumbprint, or a PEM/JWK, inline or a file)",
    )
    parser.add_argument("--policy", metavar="FILE", help="--local: appraisal policy (TOML)")
    parser.add_argument(
        "--release",
        metavar="MANIFEST",
        help="--local: a signed release manifest whose reference values must match",
    )
    parser.add_argument(
        "--publisher-key",
        metavar="PUB_PEM",
        help="--local: the release publisher's Ed25519 public key (PEM) you trust",
    )
    parser.add_argument(
        "--policy-id", default="default", help="--verifier: the service's policy id"
    )
    parser.add_argument(
        "--trust-simulated-root",
        metavar="PEM_FILE",
        help="--local: accept simulated evidence under this root, at best 'warning'",
    )
    parser.add_argument(
        "--trust-simulated-gpu-root",
        metavar="PEM_FILE",
        help="--local: accept a simulated GPU under these roots, at best 'warning'",
    )
    parser.add_argument("--collateral-dir", metavar="DIR", help="--local: offline collateral")
    parser.add_argument("--pccs-url", metavar="URL", help="--local: PCCS or Intel PCS")
    parser.add_argument("--strict", action="store_true", help="treat 'warning' as a failure")
    parser.add_argument("--timeout", type=float, default=30.0, help=argparse.SUPPRESS)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = commands.add_parser(
        "verify",
        help="verify a cllm server: evidence, DCAP, measurements, policy",
        description="Fetch fresh evidence for a new nonce and verify it locally (default) or "
        "through a verifier service. Exit 0 affirming (or warning, unless --strict), 1 "
        "contraindicated or not verifiable, 2 usage error.",
    )
    _add_verification_flags(verify)
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(handler=_cmd_verify)

    chat = commands.add_parser(
        "chat",
        help="verify a cllm server, then chat end-to-end encrypted",
        description="Refuses to send anything to a server that does not verify, unless "
        "--unprotected. Interactive on a terminal; with piped stdin, answers once and exits.",
    )
    _add_verification_flags(chat)
    chat.add_argument("--model", help="default: the server's model")
    chat.add_argument("--system", help="a system prompt")
    chat.add_argument("--max-tokens", type=int, default=512)
    chat.add_argument("--api-key", help="the server's API key, if it needs one")
    chat.add_argument(
        "--unprotected", action="store_true", help="skip verification and encryption (loudly)"
    )
    chat.add_argument(
        "--verbose-report", action="store_true", help="print the full verification report"
    )
    chat.set_defaults(handler=_cmd_chat)
