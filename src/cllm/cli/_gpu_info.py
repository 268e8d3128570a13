"""``cllm gpu info`` and ``cllm gpu simulated-root``: the GPU backend of this machine."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from rich.console import Console
from rich.markup import escape

from cllm.cli._common import EXIT_OK, print_json, report_error
from cllm.errors import CllmError
from cllm.tee import default_state_dir

if TYPE_CHECKING:
    from cllm.gpu import GpuBackendChoice

__all__ = ["register_backend_commands"]


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else default_state_dir(os.environ, Path.home())


def _cmd_info(args: argparse.Namespace, console: Console) -> int:
    """What the backend finds, truthfully: a driver query that fails is reported with its
    code, never turned into "no GPU" or "CC on"."""
    from cllm.gpu import select_gpu_backend

    choice = args.gpu_backend or os.environ.get("CLLM_GPU_BACKEND") or "auto"
    if choice not in ("auto", "nvml", "simulated", "none"):
        error = CllmError(f"unknown GPU backend {choice!r}", code="config_invalid")
        return report_error(error, as_json=args.json, console=console)
    try:
        selected = select_gpu_backend(
            cast("GpuBackendChoice", choice), state_dir=_state_dir(args), clock=time.time
        )
    except CllmError as exc:
        return report_error(exc, as_json=args.json, console=console)
    backend = selected.backend
    doc: dict[str, object] = {
        "backend": backend.name,
        "requested": choice,
        "reason": selected.reason,
        "simulated": backend.simulated,
    }
    errors: dict[str, object] = {}
    try:
        devices = backend.devices()
        doc["count"] = len(devices)
        doc["gpus"] = [d.to_dict() for d in devices]
    except CllmError as exc:
        errors["devices"] = {"code": exc.code, "message": exc.message}
    try:
        doc["cc"] = backend.cc_state().to_dict()
    except CllmError as exc:
        errors["cc"] = {"code": exc.code, "message": exc.message}
    doc["errors"] = errors
    if args.json:
        print_json(doc)
        return EXIT_OK
    console.print(f"backend  {backend.name} ({escape(selected.reason)})")
    for gpu in doc.get("gpus", []):  # type: ignore[attr-defined]
        console.print(
            f"GPU {gpu['index']}    {escape(str(gpu['name']))} {gpu['arch']} "
            f"driver {escape(str(gpu['driver_version']))} VBIOS {escape(str(gpu['vbios_version']))}"
        )
    cc = doc.get("cc")
    if isinstance(cc, dict):
        console.print(
            f"CC       {cc['mode']} (environment {cc['environment']}, multi-GPU "
            f"{cc['multi_gpu_mode']}, attestable: {'yes' if cc['attestable'] else 'no'})"
        )
    for what, problem in errors.items():
        assert isinstance(problem, dict)
        code, message = problem["code"], escape(str(problem["message"]))
        console.print(f"[red]{what}: \\[{code}] {message}[/red]")
    return EXIT_OK


def _cmd_simulated_root(args: argparse.Namespace, console: Console) -> int:
    from cllm.gpu import load_simulated_gpu

    try:
        gpu = load_simulated_gpu(_state_dir(args), clock=time.time)
    except CllmError as exc:
        return report_error(exc, as_json=args.json, console=console)
    device, rim = gpu.root_pems()
    doc = {
        "roots_pem": (device + rim).decode(),
        "device_root_pem": device.decode(),
        "rim_root_pem": rim.decode(),
        "state": str(gpu.path),
        "simulated": True,
    }
    if args.json:
        print_json(doc)
    else:
        console.print(doc["roots_pem"], end="")
    return EXIT_OK


def register_backend_commands(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    info = actions.add_parser(
        "info", help="the GPU backend, the GPUs it finds and their confidential-computing state"
    )
    info.add_argument(
        "--gpu-backend",
        choices=("auto", "nvml", "simulated", "none"),
        help="default: $CLLM_GPU_BACKEND, else auto",
    )
    info.add_argument("--state-dir", metavar="DIR", help="where the simulated GPU lives")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(handler=_cmd_info)

    root = actions.add_parser(
        "simulated-root",
        help="the simulated GPU's roots (device, RIM) a verifier must trust explicitly",
    )
    root.add_argument("--state-dir", metavar="DIR", help="where the simulated GPU lives")
    root.add_argument("--json", action="store_true", help="machine-readable output")
    root.set_defaults(handler=_cmd_simulated_root)
