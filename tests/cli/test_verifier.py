"""`cllm verifier serve` starts a real server on loopback: health, JWKS, an attestation."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cllm.evidence import Binding, build_evidence
from cllm.measure import Event, EventLog
from cllm.tee import SimulatedTdBackend, load_simulated_world, rtmr3_extender
from cllm.token import verify_token


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
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
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
    backend = SimulatedTdBackend(world)
    log = EventLog(rtmr3_extender(backend))
    log.append(Event(rtmr=3, type="cllm.model", name="m", digest=bytes(48)))
    nonce = secrets.token_bytes(32)
    evidence = build_evidence(
        backend,
        tee="simulated-tdx",
        binding=Binding.with_throwaway_keys(nonce),
        events=log.events(),
        collateral=world.collateral(),
    )
    jwks = httpx.get(f"{base}/.well-known/jwks.json").json()
    response = httpx.post(
        f"{base}/v1/attestation",
        json={"evidence": json.loads(json.dumps(evidence.to_json())), "nonce": nonce.hex()},
        timeout=10,
    )
    assert response.status_code == 200
    claims = verify_token(response.json()["token"], jwks=jwks, now=int(time.time()))
    assert claims["status"] == "warning"
    assert claims["simulated"] is True
