"""``cllm tee info|evidence|simulated-root`` and ``cllm evidence check``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from cllm.cli._common import (
    EXIT_OK,
    hex_bytes,
    print_json,
    read_file,
    report_error,
)
from cllm.errors import CllmError
from cllm.evidence import (
    NONCE_SIZE,
    Binding,
    build_evidence,
    parse_evidence,
)
from cllm.measure import (
    CLLM_DISTRIBUTION,
    Event,
    EventLog,
    measure_config,
    measure_distribution,
    parse_event_log,
)
from cllm.tee import (
    SimulatedTdBackend,
    TdxBackend,
    default_state_dir,
    load_simulated_world,
    rtmr3_extender,
    select_backend,
)
from cllm.verify import Collateral, load_collateral

if TYPE_CHECKING:
    from cllm.policy import Policy

__all__ = ["register"]


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else default_state_dir(os.environ, Path.home())


def _cmd_info(args: argparse.Namespace, console: Console) -> int:
    available, reason = TdxBackend.available(Path(args.sys_root))
    doc = {
        "backend": "tdx" if available else "simulated",
        "reason": reason if available else f"no TDX: {reason}",
        "state_dir": None if available else str(_state_dir(args)),
    }
    if args.json:
        print_json(doc)
    else:
        console.print(f"backend: [bold]{doc['backend']}[/bold] ({doc['reason']})")
    return EXIT_OK


def _cmd_evidence(args: argparse.Namespace, console: Console) -> int:
    try:
        chosen = select_backend(
            args.tee, root=Path(args.sys_root), state_dir=_state_dir(args), clock=time.time
        )
        backend = chosen.backend
        events: tuple[Event, ...]
        if isinstance(backend, SimulatedTdBackend):
            # A fresh simulated TD: measure what this command runs, as `cllm serve` would.
            log = EventLog(rtmr3_extender(backend))
            log.append(measure_distribution(CLLM_DISTRIBUTION, name="cllm"))
            log.append(measure_config({"tee": args.tee}, ["cllm", *sys.argv[1:]]))
            events = log.events()
            collateral: Collateral | None = backend.world.collateral()
        else:
            # Real TDX: RTMR3 belongs to the running server; never extend it from here. The log
            # that explains it is the server's (``--event-log``).
            events = (
                parse_event_log(read_file(args.event_log, "event log")) if args.event_log else ()
            )
            collateral = None
        evidence = build_evidence(
            backend,
            tee=chosen.evidence_tee,
            binding=Binding.with_throwaway_keys(args.nonce),
            events=events,
            collateral=collateral,
        )
    except CllmError as exc:
        return report_error(exc, as_json=args.json, console=console)
    print_json(evidence.to_json())
    return EXIT_OK


def _cmd_simulated_root(args: argparse.Namespace, console: Console) -> int:
    try:
        world = load_simulated_world(_state_dir(args), clock=time.time)
    except CllmError as exc:
        return report_error(exc, as_json=args.json, console=console)
    doc = {"root_ca_pem": world.root_ca_pem().decode(), "collateral": str(world.collateral_path)}
    if args.json:
        print_json(doc)
    else:
        console.print(doc["root_ca_pem"], end="")
        console.print(f"collateral: {doc['collateral']}")
    return EXIT_OK


def _cmd_check(args: argparse.Namespace, console: Console) -> int:
    """The verdict of the one appraisal (``cllm.appraisal``: binding and logs, root, DCAP,
    policy, caps) on one document, printed as ``cllm verify`` prints its verdict, with what the
    evidence and DCAP steps saw. Exits as ``cllm verify`` does."""
    from cllm.appraisal import Trust
    from cllm.cli._client import _exit_code
    from cllm.client import verification_of

    try:
        evidence = parse_evidence(read_file(args.file, "evidence"))
        if args.collateral:
            collateral = load_collateral(args.collateral)
        elif evidence.collateral is not None:
            collateral = Collateral.from_json_dict(dict(evidence.collateral))
        else:
            raise CllmError("no collateral: pass --collateral", code="collateral_missing")
        at = args.at if args.at is not None else int(time.time())
        policy = _policy(args)
        trust = Trust.offline()
        if args.trust_simulated_root:
            trust = trust.with_simulated_root(Path(args.trust_simulated_root))
        if args.trust_simulated_gpu_root:
            trust = trust.with_simulated_gpu_root(Path(args.trust_simulated_gpu_root))
    except CllmError as exc:
        return report_error(exc, as_json=args.json, console=console)
    # The collateral chosen above travels in the document, as carried collateral.
    document = {**evidence.to_json(), "collateral": collateral.to_json_dict()}
    verdict = trust.appraiser().appraise(document, nonce=args.nonce, policy=policy, at=at)
    result = verification_of(verdict, checked_at=at, expires_at=at + policy.max_token_age)
    check, dcap = verdict.evidence_check, verdict.dcap
    error = (check.error if check is not None else None) or (dcap.error if dcap else None)
    doc = {
        **result.to_json(),
        # What the evidence and DCAP steps saw (``ok``: both passed; ``error``: the first
        # failure among them), and the appraisal's steps.
        "ok": bool(check is not None and check.ok and dcap is not None and dcap.ok),
        "error": {"code": error.code, "message": error.message} if error else None,
        "steps": [step.to_json() for step in verdict.steps],
        "evidence_steps": [step.to_dict() for step in check.steps] if check else [],
        "dcap": dcap.to_dict() if dcap else None,
        "rtmrs": check.rtmrs.as_hex() if check and check.rtmrs else None,
    }
    if args.json:
        print_json(doc)
    else:
        colour = {"affirming": "green", "warning": "yellow"}.get(result.status, "red")
        line = Text(f"verdict {result.status.upper()}", style=f"bold {colour}")
        if result.simulated:
            line.append("  (simulated TD: not hardware evidence)", style="yellow")
        console.print(line + Text(f" ({evidence.tee})"))
        for reason in result.reasons:
            console.print(Text(f"  - {reason.code}: {reason.message}"))
    return _exit_code(result.status, strict=args.strict)


def _policy(args: argparse.Namespace) -> Policy:
    """``--policy`` (default: the built-in one) with ``--release``'s reference values."""
    from cllm.policy import default_policy, parse_policy
    from cllm.release import load_release

    if bool(args.release) != bool(args.publisher_key):
        raise CllmError("--release and --publisher-key go together", code="usage")
    policy = (
        parse_policy(
            read_file(args.policy, "policy"),
            policy_id=Path(args.policy).stem,
            base_dir=Path(args.policy).parent,
        )
        if args.policy
        else default_policy()
    )
    if args.release:
        policy = policy.with_release(
            load_release(Path(args.release), publisher_key=Path(args.publisher_key))
        )
    return policy


def _add_common(parser: argparse.ArgumentParser, *, sys_root: bool, state_dir: bool) -> None:
    if sys_root:
        parser.add_argument(
            "--sys-root", default="/", metavar="DIR", help="root of /sys (tests point it elsewhere)"
        )
    if state_dir:
        parser.add_argument(
            "--state-dir",
            metavar="DIR",
            help="state directory (default: $CLLM_STATE_DIR, else ~/.local/share/cllm)",
        )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tee = commands.add_parser("tee", help="the TEE backend: info, evidence, simulation root")
    actions = tee.add_subparsers(dest="tee_command", metavar="ACTION", required=True)

    info = actions.add_parser("info", help="which backend this machine would use, and why")
    _add_common(info, sys_root=True, state_dir=True)
    info.set_defaults(handler=_cmd_info)

    evidence = actions.add_parser(
        "evidence", help="an evidence document for a nonce, with fresh per-call keys"
    )
    evidence.add_argument("--nonce", required=True, type=hex_bytes(NONCE_SIZE), metavar="HEX")
    evidence.add_argument("--tee", choices=["auto", "tdx", "simulated"], default="auto")
    evidence.add_argument(
        "--event-log", metavar="FILE", help="tdx: the server's event log that explains RTMR3"
    )
    _add_common(evidence, sys_root=True, state_dir=True)
    evidence.set_defaults(handler=_cmd_evidence)

    root = actions.add_parser(
        "simulated-root", help="the simulation root CA and the path of its collateral"
    )
    _add_common(root, sys_root=False, state_dir=True)
    root.set_defaults(handler=_cmd_simulated_root)

    check_parser = commands.add_parser("evidence", help="evidence documents")
    check_actions = check_parser.add_subparsers(
        dest="evidence_command", metavar="ACTION", required=True
    )
    check = check_actions.add_parser(
        "check",
        help="appraise an evidence document as a verifier does: binding, nonce, logs, DCAP, policy",
        description="The verdict of the verifier's appraisal on one document, printed as "
        "`cllm verify` prints its own. Exit 0 affirming (or warning, unless --strict), 1 "
        "contraindicated, 2 usage error or unreadable evidence.",
    )
    check.add_argument("file", metavar="FILE")
    check.add_argument("--nonce", required=True, type=hex_bytes(NONCE_SIZE), metavar="HEX")
    check.add_argument("--collateral", metavar="FILE", help="default: the evidence's own")
    check.add_argument(
        "--trust-simulated-root",
        metavar="PEM_FILE",
        help="accept quotes of this simulation root and the simulated QE (never Intel's)",
    )
    check.add_argument(
        "--trust-simulated-gpu-root",
        metavar="PEM_FILE",
        help="accept a simulated GPU under these roots (cllm gpu simulated-root), at best warning",
    )
    check.add_argument("--at", type=int, metavar="UNIX_SECONDS", help="evaluation time")
    check.add_argument("--policy", metavar="FILE", help="appraisal policy (default: default)")
    check.add_argument("--release", metavar="MANIFEST", help="a signed release manifest")
    check.add_argument("--publisher-key", metavar="PUB_PEM", help="the release's publisher")
    check.add_argument("--strict", action="store_true", help="treat 'warning' as a failure")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=_cmd_check)
