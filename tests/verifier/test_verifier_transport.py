"""``cllm verifier serve`` against a slowloris (issue 14, item 5): several hundred half-sent
requests held open at once; the service still answers at once, and cuts them at its head
timeout. The limits themselves are tried in detail in tests/test_transport.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cllm.verifier import VerifierSettings
from serving import VerifierProcess, free_port
from slowloris import Held, healthz_seconds

HEADER_TIMEOUT = 3.0
SLACK = 3.0  # a loaded 2-core machine; what is asserted is "closed by the timer, not never"


def _start(tmp: Path, env: dict[str, str]) -> VerifierProcess:
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
        str(tmp / "state"),
        "--pccs-url",
        "http://127.0.0.1:9",
    ]
    log = tmp / "verifier.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
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


@pytest.fixture(scope="module")
def verifier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VerifierProcess]:
    started = _start(
        tmp_path_factory.mktemp("verifier"),
        {
            "CLLM_VERIFIER_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
            "CLLM_VERIFIER_BODY_TIMEOUT": str(HEADER_TIMEOUT),
            "CLLM_VERIFIER_MAX_CONCURRENT_REQUESTS": "4",
        },
    )
    yield started
    started.stop()


def _port(verifier: VerifierProcess) -> int:
    return int(verifier.url.rsplit(":", 1)[1])


def test_slowloris_300_half_sent_requests(verifier: VerifierProcess) -> None:
    with Held(_port(verifier), 300) as held:
        time.sleep(HEADER_TIMEOUT / 3)
        assert held.open_count() == 300  # all held at once
        status, seconds = healthz_seconds(verifier.url)
        assert status == 200
        assert seconds < 1.0
        ends = held.wait_closed(held.opened_at + HEADER_TIMEOUT + SLACK)
        elapsed = time.monotonic() - held.opened_at
    assert ends == {b"HTTP/1.1 408 Request Timeout": 300}
    assert elapsed >= HEADER_TIMEOUT - 0.1
    assert healthz_seconds(verifier.url)[0] == 200


def test_slow_bodies_take_the_concurrency_limit_only_until_the_body_timeout(
    verifier: VerifierProcess,
) -> None:
    head = (
        b"POST /v1/attestation HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"
    )
    with Held(_port(verifier), 4, head=head) as held:
        time.sleep(0.5)
        response = httpx.get(f"{verifier.url}/healthz", timeout=10)
        assert response.status_code == 503  # four attestations in progress: the limit
        assert response.headers["retry-after"] == "1"
        assert "limit of 4 requests" in response.json()["detail"]
        ends = held.wait_closed(held.opened_at + HEADER_TIMEOUT + SLACK)
    assert ends == {b"": 4}  # cut, the app told the client went away
    assert httpx.get(f"{verifier.url}/healthz", timeout=10).status_code == 200


def test_settings_have_documented_defaults(tmp_path: Path) -> None:
    settings = VerifierSettings(state_dir=tmp_path)
    assert (settings.header_timeout, settings.body_timeout, settings.idle_timeout) == (
        10.0,
        60.0,
        5.0,
    )
    assert settings.max_concurrent_requests == 256
    assert settings.max_connections is None  # derived from RLIMIT_NOFILE at start


def test_a_connection_cap_the_descriptors_cannot_carry_stops_the_start(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-c",
        "import sys; from cllm.cli import main; sys.exit(main())",
        "verifier",
        "serve",
        "--port",
        str(free_port()),
        "--state-dir",
        str(tmp_path),
    ]
    env = {**os.environ, "CLLM_VERIFIER_MAX_CONNECTIONS": str(10**9)}
    done = subprocess.run(command, env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 2
    assert b"config_invalid" in done.stdout
    assert b"max_connections 1000000000" in done.stdout
