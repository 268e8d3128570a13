"""``cllm quote show|verify``: DCAP quotes offline.

Exit codes for ``cllm quote verify``: 0 verified, 1 rejected, 2 input unusable.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import TYPE_CHECKING, Any

from cllm.cli._common import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNUSABLE,
    hex_bytes,
    print_json,
    read_file,
    report_error,
)
from cllm.errors import CllmError, QuoteFormatError
from cllm.quote import (
    EnclaveReport,
    Quote,
    parse_pck_chain,
    parse_pck_extensions,
    parse_quote,
)
from cllm.verify import (
    INTEL_PCS_URL,
    QCNL_CONF,
    Collateral,
    CollateralFetcher,
    QuoteVerifier,
    TrustRoot,
    VerificationResult,
    default_collateral_url,
    intel_root,
    load_collateral,
)

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["quote_fields", "register"]

_TD_FIELDS = (
    "mrtd",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "rtmr3",
    "report_data",
    "td_attributes",
    "xfam",
    "mr_seam",
    "mr_signer_seam",
    "seam_attributes",
    "tee_tcb_svn",
    "mr_config_id",
    "mr_owner",
    "mr_owner_config",
    "tee_tcb_svn2",
    "mr_servicetd",
)
_SGX_FIELDS = (
    "mr_enclave",
    "mr_signer",
    "isv_prod_id",
    "isv_svn",
    "attributes",
    "report_data",
    "cpu_svn",
    "misc_select",
)


def _hex_or_value(value: object) -> object:
    return value.hex() if isinstance(value, bytes) else value


def quote_fields(quote: Quote) -> dict[str, Any]:
    """The ``cllm quote show --json`` document: byte fields as lowercase hex."""
    doc: dict[str, Any] = {"version": quote.version, "tee_type": quote.header.tee_type}
    if quote.version == 5:
        doc["body_type"] = quote.body_type
    names = _SGX_FIELDS if isinstance(quote.body, EnclaveReport) else _TD_FIELDS
    for name in names:
        value = getattr(quote.body, name)
        if value is not None:
            doc[name] = _hex_or_value(value)
    doc["qe_vendor_id"] = quote.header.qe_vendor_id.hex()
    doc["certification_data_type"] = quote.signature_data.certification.type
    try:
        extensions = parse_pck_extensions(parse_pck_chain(quote.signature_data.certification)[0])
        doc["fmspc"] = extensions.fmspc.hex()
        doc["pce_id"] = extensions.pce_id.hex()
    except QuoteFormatError as exc:
        doc["fmspc"] = None
        doc["fmspc_error"] = {"code": exc.code, "message": exc.message}
    doc["length"] = quote.length
    doc["trailing_bytes"] = quote.trailing_bytes
    return doc


def _cmd_quote_show(args: argparse.Namespace, console: Console) -> int:
    try:
        quote = parse_quote(read_file(args.quote, "quote"))
    except CllmError as exc:
        return report_error(exc, as_json=args.json, console=console)
    fields = quote_fields(quote)
    if args.json:
        print_json(fields)
        return EXIT_OK
    from rich.table import Table

    kind = "SGX enclave report" if isinstance(quote.body, EnclaveReport) else "TD report"
    table = Table(title=f"DCAP quote v{quote.version} ({kind})", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in fields.items():
        table.add_row(name, str(value))
    console.print(table)
    return EXIT_OK


def _unusable(error: CllmError, at: int, root: str) -> VerificationResult:
    return VerificationResult(ok=False, steps=(), error=error, evaluated_at=at, trust_root=root)


def _cmd_quote_verify(args: argparse.Namespace, console: Console) -> int:
    at = args.at if args.at is not None else int(time.time())
    root_name = "Intel SGX Root CA"
    try:
        root = (
            TrustRoot.from_pem_file(
                args.root_ca,
                name=args.root_ca,
                qe_vendor_id=args.qe_vendor_id,  # None: the root's own (cllm.verify decides)
                allow_any_qe_vendor=args.allow_any_qe_vendor,
            )
            if args.root_ca
            else intel_root()
        )
        root_name = root.name
        quote_bytes = read_file(args.quote, "quote")
        collateral = (
            load_collateral(args.collateral)
            if args.collateral
            else _fetch_collateral(quote_bytes, args.pccs_url)
        )
    except CllmError as exc:
        result = _unusable(exc, at, root_name)
    else:
        result = QuoteVerifier(trust_root=root).verify(quote_bytes, collateral, at=at)
    code = (
        EXIT_OK
        if result.ok
        else EXIT_UNUSABLE
        if result.input_unusable or not result.steps
        else EXIT_REJECTED
    )
    if args.json:
        print_json(result.to_dict())
    else:
        _print_verification(result, console)
    return code


def _fetch_collateral(quote_bytes: bytes, pccs_url: str | None) -> Collateral:
    import httpx

    url = pccs_url or default_collateral_url()
    logging.getLogger(__name__).info("fetching collateral from %s", url)
    with httpx.Client(timeout=30.0) as client:
        fetcher = CollateralFetcher(base_url=url, client=client, clock=time.time)
        return fetcher.for_quote(parse_quote(quote_bytes))


def _print_verification(result: VerificationResult, console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"DCAP verification under {result.trust_root}")
    table.add_column("#", justify="right")
    table.add_column("step")
    table.add_column("result")
    for step in result.steps:
        mark = "[green]ok[/green]" if step.ok else f"[red]{step.code}[/red]: {step.message}"
        table.add_row(str(step.number), step.name, mark)
    console.print(table)
    if result.ok:
        status = result.tcb_status.value if result.tcb_status else "?"
        color = "green" if status == "UpToDate" else "yellow"
        console.print(f"[bold {color}]verified[/]: TCB status {status}")
        if result.advisory_ids:
            console.print("advisories: " + ", ".join(result.advisory_ids))
        if result.td is not None:
            td = result.td
            console.print(
                f"TD facts: debug={td.debug} sept_ve_disable={td.sept_ve_disable} "
                f"mr_servicetd_zero={td.mr_servicetd_zero}"
            )
    elif result.error is not None:
        error = result.error
        console.print(f"[bold red]rejected[/]: {escape(f'[{error.code}] {error.message}')}")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    quote = commands.add_parser("quote", help="parse and verify DCAP quotes offline")
    quote_commands = quote.add_subparsers(dest="quote_command", metavar="ACTION", required=True)

    show = quote_commands.add_parser("show", help="print the fields of a quote")
    show.add_argument("quote", metavar="QUOTE_FILE")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=_cmd_quote_show)

    verify = quote_commands.add_parser(
        "verify", help="verify a quote against collateral (DCAP pipeline)"
    )
    verify.add_argument("quote", metavar="QUOTE_FILE")
    verify.add_argument(
        "--collateral",
        metavar="FILE",
        help="collateral in QuoteCollateralV3 JSON form (default: fetch it from --pccs-url)",
    )
    verify.add_argument(
        "--pccs-url",
        metavar="URL",
        help="PCCS or Intel PCS to fetch collateral from (default: PCCS_URL of "
        f"{QCNL_CONF}, else {INTEL_PCS_URL})",
    )
    verify.add_argument(
        "--at",
        type=int,
        metavar="UNIX_SECONDS",
        help="evaluation time (default: now)",
    )
    verify.add_argument(
        "--root-ca",
        metavar="PEM_FILE",
        help="trust this root CA instead of the pinned Intel SGX Root CA",
    )
    verify.add_argument(
        "--qe-vendor-id",
        type=hex_bytes(16),
        metavar="HEX",
        help="QE vendor ID quotes under --root-ca must carry (default: the simulated QE's for "
        "cllm's simulation root, else Intel's)",
    )
    verify.add_argument(
        "--allow-any-qe-vendor",
        action="store_true",
        help="with --root-ca: accept quotes from any QE vendor (weakens verification)",
    )
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(handler=_cmd_quote_verify)
