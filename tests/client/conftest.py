"""A real server and a real verifier service that trusts the server's simulated root."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from serving import ServeProcess, free_port, start_serve

MODEL = "smollm2-135m-instruct"


@dataclass
class VerifierProcess:
    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_verifier(*, trust: Path | None, state_dir: Path, log: Path) -> VerifierProcess:
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


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("client-server")
    served = start_serve([], state_dir=root / "state", log_path=root / "serve.log")
    yield served
    served.stop()


@pytest.fixture(scope="session")
def simulated_root(server: ServeProcess) -> Path:
    return server.log_path.parent / "state" / "simulated" / "root-ca.pem"


@pytest.fixture(scope="session")
def verifier(
    simulated_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VerifierProcess]:
    root = tmp_path_factory.mktemp("client-verifier")
    process = start_verifier(trust=simulated_root, state_dir=root / "state", log=root / "v.log")
    yield process
    process.stop()
