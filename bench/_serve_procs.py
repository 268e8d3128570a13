"""bench/serve.py, its shared constants and process helpers: the servers, the workers and the
machine's foreign load."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from _procs import HOST, bytecode_env, cllm_command, free_port, process_cpu

CHAT_PATH: Final = "/v1/chat/completions"
START_TIMEOUT: Final = 120.0  # seconds for a server to answer /healthz (model load included)
REQUEST_TIMEOUT: Final = 300.0
SEED: Final = 1234
PROMPT: Final = (
    "Write a long, detailed essay about the history of the Roman Empire, from the founding of "
    "the city to the fall of Constantinople. Cover every century in depth, with names, dates, "
    "battles, emperors, laws, trade and daily life. Do not stop early."
)
UPSTREAM_MODEL: Final = "bench-upstream"
GOAL_RATIO: Final = 0.97
GOAL_TTFT_OVERHEAD_MS: Final = 15.0
GOAL_HPKE_RATIO: Final = 0.95
GOAL_GATEWAY_TOK_S: Final = 10_000.0

_log = logging.getLogger("bench.serve")


def thread_cpu(pid: int, tid: int | None = None) -> float:
    """CPU seconds of one thread (default: the main thread, whose id is the process id), from
    the scheduler's nanosecond run time (``schedstat``) rather than clock ticks."""
    try:
        return int(Path(f"/proc/{pid}/task/{tid or pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def machine_busy() -> float:
    """CPU seconds all CPUs spent busy since boot, time stolen by the hypervisor included."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class ForeignLoad:
    """How many CPUs processes other than ``pids`` kept busy (plus hypervisor steal) from
    construction until ``cores()``: the benchmark's own noise detector."""

    def __init__(self, pids: Sequence[int]) -> None:
        self._pids = pids
        self._start = time.perf_counter()
        self._busy = machine_busy()
        self._ours = sum(process_cpu(pid) for pid in pids)

    def cores(self) -> float:
        wall = time.perf_counter() - self._start
        ours = sum(process_cpu(pid) for pid in self._pids) - self._ours
        foreign = machine_busy() - self._busy - ours
        return max(foreign, 0.0) / wall if wall > 0 else 0.0


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class ServeProcess:
    """``cllm serve --tee simulated --state-dir <tmp> --port <free> *args`` in a subprocess."""

    def __init__(self, tmp: Path, name: str, args: Sequence[str]) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = tmp / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                *cllm_command(),
                "serve",
                "--tee",
                "simulated",
                "--state-dir",
                str(tmp / f"{name}-state"),
                "--host",
                HOST,
                "--port",
                str(self.port),
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200", **bytecode_env(tmp / f"{name}-pycache")},
        )

    def wait_ready(self) -> dict[str, Any]:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    self.fail(f"cllm serve exited with code {self.process.returncode}")
                try:
                    response = client.get(f"{self.url}/healthz")
                    if response.status_code == 200:
                        health: dict[str, Any] = response.json()
                        return health
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        self.fail(f"cllm serve did not answer /healthz within {START_TIMEOUT:.0f} s")
        raise AssertionError  # unreachable

    def fail(self, message: str) -> None:
        self.stop()
        log = self.log_path.read_text(errors="replace")
        raise SystemExit(f"{message}\n--- server output ---\n{log[-4000:]}")

    def cpu(self) -> float:
        return process_cpu(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


SCRIPT: Final = Path(__file__).resolve().with_name("serve.py")  # the benchmark itself


def worker_process(mode: str, *extra: str) -> subprocess.Popen[bytes]:
    """bench/serve.py in worker mode (``--worker MODE``), talking JSON lines on stdin / stdout."""
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), "--worker", mode, *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def read_line(process: subprocess.Popen[bytes], what: str) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"the {what} worker exited (code {process.wait()})")
    doc: dict[str, Any] = json.loads(line)
    if "error" in doc:
        raise SystemExit(f"the {what} worker failed: {doc['error']}")
    return doc
