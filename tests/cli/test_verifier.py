"""`cllm verifier serve` starts a real server on loopback: health, JWKS, an attestation."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cllm.measure import Event
from cllm.tee import load_simulated_world
from cllm.token import verify_token
from simulated_evidence import simulated_evidence


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children(pid: int) -> set[int]:
    """The process's live child processes (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found.update(int(child) for child in children)
    return found


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    world = load_simulated_world(tmp_path / "td", clock=time.time)
    port = _free_port()
    command = [
        str(Path(sys.executable).parent / "cllm"),
        "verifier",
        "serve",
        "--port",
        str(port),
        "--state-dir",
        str(tmp_path / "verifier"),
        "--trust-simulated-root",
        str(world.root_ca_path),
        "--pccs-url",
        "http://127.0.0.1:9",
        *getattr(request, "param", ()),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    request.node.serve_process = process
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(process.stderr.read().decode() if process.stderr else "")
            time.sleep(0.1)
        yield base, tmp_path / "td"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_serve_attests_over_http(server: tuple[str, Path]) -> None:
    base, td_state = server
    world = load_simulated_world(td_state, clock=time.time)
    document, nonce = simulated_evidence(
        world, (Event(rtmr=3, type="cllm.model", name="m", digest=bytes(48)),)
    )
    jwks = httpx.get(f"{base}/.well-known/jwks.json").json()
    response = httpx.post(
        f"{base}/v1/attestation",
        json={"evidence": document, "nonce": nonce.hex()},
        timeout=10,
    )
    assert response.status_code == 200
    claims = verify_token(response.json()["token"], jwks=jwks, now=int(time.time()))
    assert claims["status"] == "warning"
    assert claims["simulated"] is True


@pytest.mark.parametrize("server", [("--workers", "2")], indirect=True)
def test_workers_are_processes_that_share_the_key_and_replace_each_other(
    server: tuple[str, Path], request: pytest.FixtureRequest
) -> None:
    base, _ = server
    parent: subprocess.Popen[bytes] = request.node.serve_process
    _wait_for(lambda: len(_children(parent.pid)) == 2, "two worker processes")
    workers = _children(parent.pid)
    kids = {httpx.get(f"{base}/.well-known/jwks.json").json()["keys"][0]["kid"] for _ in range(8)}
    assert len(kids) == 1  # one signing key, whichever process answers
    test_serve_attests_over_http(server)

    # A worker that dies is replaced; the service keeps answering.
    gone = workers.pop()
    os.kill(gone, signal.SIGKILL)
    _wait_for(lambda: gone not in _children(parent.pid), "the killed worker to be reaped")
    _wait_for(lambda: len(_children(parent.pid)) == 2, "a replacement worker")
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200

    # SIGINT stops the parent and every worker.
    survivors = _children(parent.pid)
    parent.send_signal(signal.SIGINT)
    assert parent.wait(timeout=20) == 0
    for pid in survivors:
        _wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists(), f"worker {pid} to exit")
