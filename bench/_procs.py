"""Process helpers the benchmarks share: a free loopback port, the installed ``cllm`` command,
and a process's CPU time."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Final

HOST: Final = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def cllm_command() -> list[str]:
    script = Path(sys.executable).with_name("cllm")
    if script.exists():
        return [str(script)]
    found = shutil.which("cllm")
    if found is None:
        raise SystemExit("the `cllm` command is not installed (run `make run` first)")
    return [found]


def bytecode_env(prefix: Path) -> dict[str, str]:
    """What ``cllm serve`` needs to start: it refuses where bytecode could be read from disk
    instead of the measured source, so a fresh, never written cache prefix."""
    return {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(prefix)}


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc); 0.0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree_cpu(pid: int) -> float:
    """``process_cpu`` of a process plus that of its live children (a pre-forked server's
    workers, which the parent has not reaped, so their time is not in its own counters)."""
    total = process_cpu(pid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # field 4, the parent's pid
            total += process_cpu(int(entry.name))
    return total
