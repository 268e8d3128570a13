"""A real server and a real verifier service that trusts the server's simulated root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serving import ServeProcess, VerifierProcess, start_serve, start_verifier


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
