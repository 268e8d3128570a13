"""A real ``cllm serve`` (simulated TD) and a real verifier service trusting its simulated root,
for ``cllm proxy`` to stand in front of."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serving import ServeProcess, VerifierProcess, start_serve, start_verifier


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("proxy-server")
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
    root = tmp_path_factory.mktemp("proxy-verifier")
    process = start_verifier(trust=simulated_root, state_dir=root / "state", log=root / "v.log")
    yield process
    process.stop()


@pytest.fixture
def config_home(tmp_path: Path) -> Path:
    """The user's XDG config directory for one test (never the real one)."""
    home = tmp_path / "config"
    home.mkdir()
    return home
