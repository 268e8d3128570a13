"""``cllm verifier serve``: the attestation service."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from rich.console import Console

from cllm.cli._common import report_error, require_extra, settings_error
from cllm.errors import CllmError
from cllm.tee import default_state_dir

__all__ = ["register"]


def _cmd_serve(args: argparse.Namespace, console: Console) -> int:
    try:
        require_extra("verifier", "fastapi", "uvicorn", "pydantic_settings")
    except CllmError as exc:
        return report_error(exc, as_json=False, console=console)
    from pydantic import ValidationError

    from cllm._internal.transport import effective_limits, raise_nofile_limit, run_guarded
    from cllm.verifier import VerifierSettings, create_app, load_state

    try:
        settings = VerifierSettings(
            host=args.host,
            port=args.port,
            policy_dir=Path(args.policy_dir) if args.policy_dir else None,
            collateral_dir=Path(args.collateral_dir) if args.collateral_dir else None,
            pccs_url=args.pccs_url,
            trust_simulated_root=(
                Path(args.trust_simulated_root) if args.trust_simulated_root else None
            ),
            trust_simulated_gpu_root=(
                Path(args.trust_simulated_gpu_root) if args.trust_simulated_gpu_root else None
            ),
            workers=args.workers,
            state_dir=Path(args.state_dir)
            if args.state_dir
            else default_state_dir(os.environ, Path.home()),
        )
        limits = effective_limits(settings, nofile=raise_nofile_limit())
        state = load_state(settings)
    except ValidationError as exc:
        return report_error(settings_error(exc), as_json=False, console=console)
    except CllmError as exc:
        return report_error(exc, as_json=False, console=console)
    console.print(
        f"cllm verifier on http://{settings.host}:{settings.port} (kid {state.signer.kid})"
    )
    message = (
        f"the verifier is at its limit of {limits.max_concurrent_requests} requests in "
        "progress; retry shortly"
    )
    refusal = json.dumps({"detail": message}).encode()
    run_guarded(
        create_app(state),
        limits=limits,
        refusal=lambda _path: refusal,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        log_level="warning",
    )
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verifier = commands.add_parser("verifier", help="the attestation service")
    actions = verifier.add_subparsers(dest="verifier_command", metavar="ACTION", required=True)
    serve = actions.add_parser("serve", help="serve POST /v1/attestation and the JWKS")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8081)
    serve.add_argument("--policy-dir", metavar="DIR", help="<id>.toml policies besides 'default'")
    serve.add_argument("--collateral-dir", metavar="DIR", help="offline QuoteCollateralV3 files")
    serve.add_argument("--pccs-url", metavar="URL", help="PCCS or Intel PCS for collateral")
    serve.add_argument(
        "--trust-simulated-root",
        metavar="PEM_FILE",
        help="verify simulated evidence under this root (never better than 'warning')",
    )
    serve.add_argument(
        "--trust-simulated-gpu-root",
        metavar="PEM_FILE",
        help="verify a simulated GPU under these roots (cllm gpu simulated-root; never better "
        "than 'warning')",
    )
    serve.add_argument("--state-dir", metavar="DIR", help="where the token key lives")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes sharing the key, policies and collateral (default 1)",
    )
    serve.set_defaults(handler=_cmd_serve)
