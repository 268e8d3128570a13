"""GPU evidence through real processes: ``cllm serve --gpu-backend simulated`` and
``cllm verifier serve --trust-simulated-gpu-root``. The honest path is a warning that names the
simulated GPU; a man in the middle who replays or strips the GPU evidence, and a verifier that
was not told to trust the simulated GPU, end in their exact codes (local and remote verifier)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cllm.cli import main
from cllm.client import LocalVerifier, RemoteVerifier, Verification, attest
from serving import ServeProcess, VerifierProcess, start_serve, start_verifier

Edit = Callable[[httpx.Request, httpx.Response], httpx.Response]


class Tamper(httpx.BaseTransport):
    def __init__(self, edit: Edit) -> None:
        self._inner = httpx.HTTPTransport()
        self._edit = edit

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        response.read()
        return self._edit(request, response)


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("gpu-server")
    served = start_serve(
        ["--gpu-backend", "simulated"], state_dir=root / "state", log_path=root / "serve.log"
    )
    yield served
    served.stop()


@pytest.fixture(scope="module")
def roots(gpu_server: ServeProcess) -> tuple[Path, Path]:
    state = gpu_server.log_path.parent / "state"
    pem = gpu_server.log_path.parent / "gpu-root.pem"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cllm.cli import main; sys.exit(main())",
            "gpu",
            "simulated-root",
            "--state-dir",
            str(state),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    pem.write_bytes(done.stdout)
    return state / "simulated" / "root-ca.pem", pem


@pytest.fixture(scope="module")
def gpu_verifier(
    roots: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VerifierProcess]:
    root = tmp_path_factory.mktemp("gpu-verifier")
    td_root, gpu_root = roots
    process = start_verifier(
        trust=td_root,
        state_dir=root / "state",
        log=root / "v.log",
        extra=["--trust-simulated-gpu-root", str(gpu_root)],
    )
    yield process
    process.stop()


@pytest.fixture(params=["local", "remote"])
def trusting(
    request: pytest.FixtureRequest, roots: tuple[Path, Path], gpu_verifier: VerifierProcess
) -> LocalVerifier | RemoteVerifier:
    if request.param == "local":
        return LocalVerifier(trust_simulated_root=roots[0], trust_simulated_gpu_root=roots[1])
    return RemoteVerifier(gpu_verifier.url)


def _codes(result: Verification) -> list[str]:
    return [reason.code for reason in result.reasons]


def _through(server: ServeProcess, verifier: Any, edit: Edit | None = None) -> Verification:
    transport = Tamper(edit) if edit is not None else None
    with httpx.Client(base_url=server.url, transport=transport, timeout=60) as http:
        return attest(http, verifier)


def _report(server: ServeProcess) -> dict[str, Any]:
    answer = httpx.get(
        f"{server.url}/v1/attestation/report", params={"nonce": os.urandom(32).hex()}, timeout=60
    )
    doc: dict[str, Any] = answer.json()
    return doc


def test_simulated_gpu_end_to_end_is_a_warning_that_says_so(
    gpu_server: ServeProcess, trusting: LocalVerifier | RemoteVerifier
) -> None:
    result = _through(gpu_server, trusting)
    assert result.status == "warning"
    assert result.keys is not None
    assert {"simulated_gpu", "simulated_evidence"} <= set(_codes(result))
    [gpu] = result.claims["gpus"]
    assert gpu["status"] == "verified" and gpu["simulated"] is True
    assert gpu["measurements"]["result"] == "matched" and gpu["ocsp"] == "good"
    [entry] = result.gpus  # the typed view the CLI and SDK users read
    assert entry.status == "verified" and entry.simulated and not entry.hardware_verified
    assert entry.arch == gpu["arch"] and entry.driver_version == gpu["driver_version"]


def test_cllm_verify_json_shows_the_attested_gpu_from_a_real_verifier(
    gpu_server: ServeProcess,
    gpu_verifier: VerifierProcess,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["verify", gpu_server.url, "--verifier", gpu_verifier.url, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "warning"
    assert code == 0  # a warning exits 0, visibly (1 only with --strict)
    [gpu] = doc["gpus"]
    assert gpu["status"] == "verified" and gpu["simulated"] is True
    assert gpu["measurements"]["result"] == "matched"


def test_gpu_evidence_of_another_attestation_is_refused(
    gpu_server: ServeProcess, trusting: LocalVerifier | RemoteVerifier
) -> None:
    old = _report(gpu_server)

    def replay(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path != "/v1/attestation/report":
            return response
        doc = response.json()
        doc["gpu"] = old["gpu"]
        return httpx.Response(response.status_code, json=doc)

    result = _through(gpu_server, trusting, replay)
    assert result.status == "contraindicated" and result.keys is None
    assert "gpu_evidence_digest_mismatch" in _codes(result)


def test_stripped_gpu_evidence_is_refused(
    gpu_server: ServeProcess, trusting: LocalVerifier | RemoteVerifier
) -> None:
    def strip(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path != "/v1/attestation/report":
            return response
        doc = response.json()
        del doc["gpu"]
        return httpx.Response(response.status_code, json=doc)

    result = _through(gpu_server, trusting, strip)
    assert result.status == "contraindicated" and result.keys is None
    assert "gpu_evidence_missing" in _codes(result)


def test_a_verifier_without_the_simulated_gpu_root_refuses(
    gpu_server: ServeProcess, roots: tuple[Path, Path]
) -> None:
    result = _through(gpu_server, LocalVerifier(trust_simulated_root=roots[0]))
    assert result.status == "contraindicated" and result.keys is None
    assert _codes(result) == ["simulated_gpu_not_trusted"]
