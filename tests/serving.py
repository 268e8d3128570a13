"""Real ``cllm serve`` processes for tests: started on a free port, waited for, and stopped.

Their stderr is captured to a file so tests can check what the server logged (never a prompt or
an answer)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cllm.server._startup import static_dir

_LAUNCH = "import sys; from cllm.cli import main; sys.exit(main())"

# The id under which cllm serve offers the packaged default model.
MODEL = "smollm2-135m-instruct"


def ui_events() -> list[str]:
    """``["cllm.ui"]`` when the web UI is built into the package (``make`` builds ``ui/``),
    else ``[]``: a server measures (and serves) the UI only when its files exist."""
    return ["cllm.ui"] if (static_dir() / "index.html").is_file() else []


def bytecode_env(prefix: Path) -> dict[str, str]:
    """What ``cllm serve`` needs to start (issue 12): no bytecode read from disk for the
    measured packages, via a fresh, never written ``PYTHONPYCACHEPREFIX``."""
    return {
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPYCACHEPREFIX": str(prefix),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServeProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """Die at once, mid-whatever: an upstream that crashes."""
        self.process.kill()
        self.process.wait()


def start_serve(
    args: Sequence[str],
    *,
    state_dir: Path,
    log_path: Path,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> ServeProcess:
    """``cllm -vv serve --tee simulated --state-dir ... --port <free> *args``, ready when
    ``/healthz`` answers 200. llama.cpp gets one thread unless ``args`` say otherwise: its
    threads spin at barriers, so several servers (or a busy machine) each taking every core
    slow each other down many times over."""
    port = port or free_port()  # a given port: a server restarted where clients know it
    command = [
        sys.executable,
        "-c",
        _LAUNCH,
        "-vv",
        "serve",
        "--tee",
        "simulated",
        "--state-dir",
        str(state_dir),
        "--port",
        str(port),
        *([] if "--threads" in args else ["--threads", "1"]),
        *args,
    ]
    env = {**os.environ, **bytecode_env(log_path.parent / f"pycache-{port}"), **(env or {})}
    log = log_path.open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()  # the child holds its own descriptor
    tls = "--tls" in args or "--tls-cert" in args
    served = ServeProcess(process, port, log_path, "https" if tls else "http")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cllm serve exited with {process.returncode}:\n{served.log()}")
        try:
            # verify=False: only "is it up"; tests check the certificate against the binding.
            if httpx.get(f"{served.url}/healthz", timeout=1, verify=False).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    served.stop()
    raise RuntimeError(f"cllm serve did not become healthy:\n{served.log()}")


class http:  # noqa: N801 - used like the httpx module it wraps
    """``httpx``'s one-shot calls with a timeout that suits a shared, possibly busy CI machine
    (httpx's default of 5 s is for interactive use, not for a model answering on one core)."""

    TIMEOUT = 120.0

    @staticmethod
    def get(url: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(url, **{"timeout": http.TIMEOUT, **kwargs})

    @staticmethod
    def post(url: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(url, **{"timeout": http.TIMEOUT, **kwargs})

    @staticmethod
    def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, url, **{"timeout": http.TIMEOUT, **kwargs})


@dataclass
class VerifierProcess:
    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_verifier(
    *, trust: Path | None, state_dir: Path, log: Path, extra: Sequence[str] = ()
) -> VerifierProcess:
    port = free_port()
    command = [
        sys.executable,
        "-c",
        "import sys; from cllm.cli import main; sys.exit(main())",
        "verifier",
        "serve",
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
        "--pccs-url",
        "http://127.0.0.1:9",
    ]
    if trust is not None:
        command += ["--trust-simulated-root", str(trust)]
    command += list(extra)
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    verifier = VerifierProcess(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(log.read_text())
        try:
            if httpx.get(f"{verifier.url}/healthz", timeout=1).status_code == 200:
                return verifier
        except httpx.HTTPError:
            time.sleep(0.1)
    verifier.stop()
    raise RuntimeError("verifier did not start")
