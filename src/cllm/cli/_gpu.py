"""``cllm gpu show|verify`` and ``cllm gpu rim verify``: NVIDIA GPU evidence offline.

Exit codes: 0 verified, 1 rejected, 2 input unusable. Everything cryptographic is imported
inside the commands, so ``cllm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cllm.cli._common import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNUSABLE,
    print_json,
    read_file,
    report_error,
)
from cllm.cli._gpu_info import register_backend_commands
from cllm.errors import CllmError

if TYPE_CHECKING:
    import httpx

    from cllm.gpu import GpuReport, GpuVerification, OcspPolicy, RimSources

__all__ = ["register"]

_log = logging.getLogger(__name__)

# Where the network sources are, when used (tests point them at loopback fakes).
OCSP_URL_ENV = "CLLM_GPU_OCSP_URL"
RIM_URL_ENV = "CLLM_GPU_RIM_URL"


def report_fields(report: GpuReport) -> dict[str, Any]:
    """The ``cllm gpu show --json`` document."""
    from cllm.gpu import GpuArch, driver_rim_id, vbios_rim_id

    o = report.opaque
    arch = {0x0180: "HOPPER", 0x01A0: "BLACKWELL"}.get(o.gpu_info or -1)

    return {
        "length": report.length,
        "trailing_bytes": report.trailing_bytes,
        "nonce": report.request_nonce.hex(),
        "responder_nonce": report.responder_nonce.hex(),
        "kind": "gsp" if report.is_gsp and o.fields else "fsp",
        "arch": arch,
        "driver_version": o.driver_version,
        "vbios_version": o.vbios_version,
        "fwid": o.fwid.hex() if o.fwid else None,
        "opaque_format": "nvdaod" if o.nvdaod_version else "legacy",
        "nvdaod_version": list(o.nvdaod_version) if o.nvdaod_version else None,
        "opaque": {str(f.type): f.value.hex() for f in o.fields},
        "driver_rim_id": driver_rim_id(report, GpuArch(arch)) if arch else None,
        "vbios_rim_id": vbios_rim_id(report),
        "measurements": {
            str(b.index): {"type": b.type, "value": b.value.hex()} for b in report.blocks
        },
        "signature": report.signature.hex(),
    }


def _cmd_show(args: argparse.Namespace, console: Console) -> int:
    from cllm.gpu import parse_report

    try:
        report = parse_report(read_file(args.report, "report"), allow_trailing_zeros=True)
    except CllmError as exc:
        return report_error(exc, as_json=args.json, console=console)
    fields = report_fields(report)
    if args.json:
        print_json(fields)
        return EXIT_OK
    table = Table(title="NVIDIA GPU attestation report (SPDM 1.1)", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in fields.items():
        if name not in ("measurements", "opaque"):
            table.add_row(name, escape(str(value)))
    table.add_row("measurement blocks", str(len(report.blocks)))
    console.print(table)
    return EXIT_OK


def _ocsp_policy(args: argparse.Namespace, client: httpx.Client) -> OcspPolicy:
    from cllm.gpu import NVIDIA_OCSP_URL, OcspFetcher, OcspMode, OcspPolicy

    mode = OcspMode(args.ocsp)
    responses = tuple(read_file(path, "OCSP response") for path in args.ocsp_response or ())
    if mode is OcspMode.OFF:
        return OcspPolicy(mode)
    fetcher = OcspFetcher(
        client=client,
        clock=time.time,
        nonce=lambda: secrets.token_bytes(32),
        url=os.environ.get(OCSP_URL_ENV) or NVIDIA_OCSP_URL,
    )
    return OcspPolicy(mode, responses=responses, fetcher=fetcher)


def _rim_sources(args: argparse.Namespace, client: httpx.Client) -> RimSources | None:
    from cllm.gpu import RimDirectory, RimFiles, RimService, RimSource, RimSources

    sources: list[RimSource] = []
    if args.rim:
        sources.append(RimFiles(tuple(read_file(path, "RIM") for path in args.rim)))
    if args.rim_dir:
        if not Path(args.rim_dir).is_dir():
            raise CllmError(f"{args.rim_dir} is not a directory", code="file_unreadable")
        sources.append(RimDirectory(Path(args.rim_dir)))
    service = os.environ.get(RIM_URL_ENV)
    if service:
        sources.append(RimService(client=client, url=service))
    return RimSources(sources) if sources else None


def _cmd_verify(args: argparse.Namespace, console: Console) -> int:
    import httpx

    from cllm.gpu import NO_RIMS, GpuVerifier, RimKind, nvidia_roots, parse_report

    at = args.at if args.at is not None else int(time.time())
    nonce_checked = args.nonce is not None
    with httpx.Client() as client:
        try:
            report = read_file(args.report, "report")
            chain = read_file(args.chain, "device chain")
            if args.nonce is not None:
                nonce = _nonce(args.nonce)
            else:
                # No expected nonce: the report's own, so the other checks still run; the
                # output says freshness was not checked.
                try:
                    nonce = parse_report(report, allow_trailing_zeros=True).request_nonce
                except CllmError:
                    nonce = bytes(32)
                _log.warning("no --nonce: the report's freshness is not checked")
            sources = _rim_sources(args, client)
            ocsp = _ocsp_policy(args, client)
        except CllmError as exc:
            return _finish_unusable(exc, args, console)
        result = GpuVerifier(roots=nvidia_roots()).verify(
            report,
            chain=chain,
            expected_nonce=nonce,
            rims=sources if sources is not None else NO_RIMS,
            rims_required=(RimKind.DRIVER, RimKind.VBIOS) if sources is not None else (),
            ocsp=ocsp,
            at=at,
        )
    code = EXIT_OK if result.ok else EXIT_UNUSABLE if result.input_unusable else EXIT_REJECTED
    if args.json:
        doc = result.to_dict()
        doc["nonce_checked"] = nonce_checked
        print_json(doc)
    else:
        _print_verification(result, console, nonce_checked=nonce_checked)
    return code


def _nonce(text: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError as exc:
        raise CllmError("--nonce is not hex", code="nonce_invalid") from exc
    if len(value) != 32:
        raise CllmError(f"--nonce must be 32 bytes, got {len(value)}", code="nonce_invalid")
    return value


def _finish_unusable(exc: CllmError, args: argparse.Namespace, console: Console) -> int:
    if args.json:
        print_json(
            {
                "ok": False,
                "error": {"code": exc.code, "message": exc.message},
                "steps": [],
                "claims": None,
            }
        )
        return EXIT_UNUSABLE
    return report_error(exc, as_json=False, console=console)


def _print_verification(result: GpuVerification, console: Console, *, nonce_checked: bool) -> None:
    table = Table(title="NVIDIA GPU evidence verification")
    table.add_column("#", justify="right")
    table.add_column("step")
    table.add_column("result")
    for step in result.steps:
        mark = (
            "[green]ok[/green]"
            if step.ok
            else f"[red]{escape(str(step.code))}[/red]: {escape(str(step.message))}"
        )
        table.add_row(str(step.number), step.name, mark)
    console.print(table)
    claims = result.claims
    if result.ok and claims is not None:
        console.print(
            f"[bold green]verified[/]: {escape(str(claims.hwmodel))} ({claims.arch}), driver "
            f"{claims.driver_version}, VBIOS {claims.vbios_version}, ueid {claims.ueid}"
        )
        if claims.measurements is None:
            console.print("[yellow]measurements not appraised (no RIMs given)[/yellow]")
        if not nonce_checked:
            console.print("[yellow]nonce not checked (no --nonce): freshness unproven[/yellow]")
    elif result.error is not None:
        error = result.error
        console.print(f"[bold red]rejected[/]: {escape(f'[{error.code}] {error.message}')}")
        if claims is not None and claims.measurements is not None:
            console.print(
                "mismatched indices: "
                + ", ".join(str(i) for i in claims.measurements.mismatched_indices)
            )


def _cmd_rim_verify(args: argparse.Namespace, console: Console) -> int:
    from cllm.errors import GpuEvidenceFormatError
    from cllm.gpu import GpuVerifier, nvidia_roots

    at = args.at if args.at is not None else int(time.time())
    doc: dict[str, Any] = {"ok": False, "kind": None, "version": None, "active_indices": None}
    try:
        rim, expires = GpuVerifier(roots=nvidia_roots()).verify_rim(
            read_file(args.file, "RIM"), at=at
        )
    except CllmError as exc:
        code = (
            EXIT_UNUSABLE
            if isinstance(exc, GpuEvidenceFormatError) or exc.code == "file_unreadable"
            else EXIT_REJECTED
        )
        doc["error"] = {"code": exc.code, "message": exc.message}
    else:
        code = EXIT_OK
        doc.update(
            ok=True,
            kind=str(rim.kind),
            version=rim.version,
            active_indices=list(rim.active_indices),
            product=rim.product,
            sha384=rim.sha384.hex(),
            signer_expires=expires,
            error=None,
        )
    doc["evaluated_at"] = at
    if args.json:
        print_json(doc)
    elif doc["ok"]:
        console.print(
            f"[bold green]verified[/]: {doc['kind']} RIM {escape(doc['version'])} for "
            f"{escape(doc['product'])}, active indices {doc['active_indices']}"
        )
    else:
        text = f"[{doc['error']['code']}] {doc['error']['message']}"
        console.print(f"[bold red]rejected[/]: {escape(text)}")
    return code


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gpu = commands.add_parser("gpu", help="parse and verify NVIDIA GPU attestation evidence")
    actions = gpu.add_subparsers(dest="gpu_command", metavar="ACTION", required=True)

    show = actions.add_parser("show", help="print the fields of a GPU attestation report")
    show.add_argument("report", metavar="REPORT")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=_cmd_show)

    verify = actions.add_parser("verify", help="verify a GPU report, its chain, RIMs and OCSP")
    verify.add_argument("report", metavar="REPORT")
    verify.add_argument("--chain", required=True, metavar="PEM", help="device chain, leaf first")
    verify.add_argument(
        "--nonce", metavar="HEX", help="expected request nonce (32 bytes; default: not checked)"
    )
    verify.add_argument(
        "--rim", action="extend", nargs="+", metavar="FILE", help="driver and VBIOS RIM files"
    )
    verify.add_argument("--rim-dir", metavar="DIR", help="directory of RIMs named by RIM id")
    verify.add_argument(
        "--ocsp",
        choices=("require", "allow-unknown", "off"),
        default="require",
        help="revocation policy (default: require; others weaken verification)",
    )
    verify.add_argument(
        "--ocsp-response",
        action="extend",
        nargs="+",
        metavar="FILE",
        help="DER OCSP responses to use instead of asking the responder (air-gapped)",
    )
    verify.add_argument("--at", type=int, metavar="UNIX_SECONDS", help="evaluation time")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(handler=_cmd_verify)

    register_backend_commands(actions)

    rim = actions.add_parser("rim", help="NVIDIA reference integrity manifests")
    rim_actions = rim.add_subparsers(dest="rim_command", metavar="ACTION", required=True)
    rim_verify = rim_actions.add_parser("verify", help="verify a RIM's signature and chain")
    rim_verify.add_argument("file", metavar="FILE")
    rim_verify.add_argument("--at", type=int, metavar="UNIX_SECONDS", help="evaluation time")
    rim_verify.add_argument("--json", action="store_true", help="machine-readable output")
    rim_verify.set_defaults(handler=_cmd_rim_verify)
