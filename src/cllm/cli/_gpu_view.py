"""The GPU section of ``cllm verify`` (and ``cllm chat --verbose-report``): one block per GPU of
the verdict's ``gpus`` claim. Every value is server- or verifier-chosen text: printed through
``outside_text``, never as markup, control characters escaped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cllm.cli._text import outside_text

if TYPE_CHECKING:
    from cllm.client import GpuEntry, Verification

__all__ = ["gpu_note", "print_gpus"]

_STATUS_STYLE = {"verified": "green", "unattested": "yellow", "rejected": "red"}


def gpu_note(result: Verification) -> str:
    """What the verdict line must add about the GPUs ("" when every GPU is verified hardware)."""
    gpus = result.gpus
    notes = []
    simulated = sum(1 for gpu in gpus if gpu.simulated)
    if simulated:
        notes.append(f"simulated GPU{'s' if simulated > 1 else ''}: not hardware evidence")
    for status in ("unattested", "rejected"):
        count = sum(1 for gpu in gpus if gpu.status == status)
        if count:
            notes.append(f"{count} GPU{'s' if count > 1 else ''} {status}")
    return f"({'; '.join(notes)})" if notes else ""


def _measurements(gpu: GpuEntry) -> str:
    m = gpu.measurements
    if m.result == "mismatched":
        indices = ", ".join(str(i) for i in m.mismatched_indices) or "not named"
        return f"MISMATCHED at indices {indices}"
    if m.result == "matched":
        return "matched the RIMs"
    return "not appraised (no RIMs compared)"


def _block(table: Table, gpu: GpuEntry) -> None:
    status = Text(gpu.status.upper(), style=f"bold {_STATUS_STYLE[gpu.status]}")
    if gpu.simulated:
        status.append("  SIMULATED GPU: not hardware evidence", style="bold yellow")
    table.add_row(Text(f"GPU {gpu.index}", style="bold"), status)

    def row(name: str, value: object) -> None:
        table.add_row(Text(f"  {name}"), outside_text("—" if value is None else value))

    row("architecture", gpu.arch)
    row("hwmodel", gpu.hwmodel)
    row("ueid", gpu.ueid)
    row("driver", gpu.driver_version)
    row("VBIOS", gpu.vbios_version)
    row("mode", gpu.mode)
    table.add_row(
        Text("  measurements"),
        outside_text(
            _measurements(gpu), style="red" if gpu.measurements.result == "mismatched" else ""
        ),
    )
    row("RIMs", ", ".join(gpu.rim_ids) or "none")
    row("OCSP", gpu.ocsp)
    if gpu.error is not None:
        table.add_row(
            Text("  error"), outside_text(f"{gpu.error.code}: {gpu.error.message}", style="red")
        )


def print_gpus(console: Console, result: Verification) -> None:
    """The GPU section: "not reported" when the verdict has no ``gpus`` claim at all (a verifier
    that predates it), "no GPU evidence" when the list is empty."""
    claims: Mapping[str, Any] = result.claims
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    if not isinstance(claims.get("gpus"), list):
        table.add_row("GPUs", Text("not reported by the verifier", style="yellow"))
    elif not result.gpus:
        table.add_row("GPUs", Text("no GPU evidence"))
    else:
        count = len(result.gpus)
        table.add_row("GPUs", Text(f"{count} GPU{'s' if count > 1 else ''}"))
        for gpu in result.gpus:
            _block(table, gpu)
    console.print(table)
