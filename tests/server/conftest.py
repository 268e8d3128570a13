"""One embedded-engine server for the module's tests (the model loads in well under a second,
but measuring and starting a process is worth sharing)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cllm.client import PinnedKeys
from cllm.evidence import check_evidence, parse_evidence
from serving import ServeProcess, http, start_serve


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("serve")
    server = start_serve([], state_dir=root / "state", log_path=root / "serve.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pinned(served: ServeProcess) -> PinnedKeys:
    """The server's keys, taken only from evidence whose binding and nonce check out."""
    nonce = os.urandom(32)
    document = http.get(f"{served.url}/v1/attestation/report", params={"nonce": nonce.hex()})
    assert document.status_code == 200
    evidence = parse_evidence(document.content)
    checked = check_evidence(evidence, expected_nonce=nonce)
    assert checked.ok, checked.error
    return PinnedKeys.from_binding(evidence.binding)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"
