"""The verdict's GPUs where a user looks: ``Verification.gpus`` (typed, read defensively),
``--json``'s ``gpus``, and the GPU section of ``cllm verify`` (escaped, simulated and
unattested GPUs said on the verdict line), against a real server and a verifier whose token
carries contract-shaped ``gpus`` claims."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cllm.cli import main
from cllm.cli._gpu_view import gpu_note, print_gpus
from cllm.client import GpuEntry, Verification
from cllm.token import TokenSigner
from gateway import signing_verifier
from gpu_claims import (
    DRIVER_RIM,
    HWMODEL,
    UEID,
    VBIOS_RIM,
    gpu_claim,
    rejected_gpu,
    simulated_gpu,
    unattested_gpu,
)
from serving import ServeProcess


def _verification(gpus: object, **claims: Any) -> Verification:
    doc = {"status": "affirming", "simulated": False, "tee": "tdx", **claims}
    if gpus is not ...:
        doc["gpus"] = gpus
    return Verification("affirming", (), doc, "local", 0)


def _printed(result: Verification) -> str:
    out = io.StringIO()
    print_gpus(Console(file=out, width=400, color_system=None), result)
    return out.getvalue()


# --- the SDK view -------------------------------------------------------------------------------


def test_gpus_are_typed_entries() -> None:
    result = _verification([gpu_claim(0), rejected_gpu(1)])
    first, second = result.gpus
    assert isinstance(first, GpuEntry)
    assert (first.index, first.arch, first.ueid, first.hwmodel) == (0, "hopper", UEID, HWMODEL)
    assert (first.driver_version, first.vbios_version, first.mode) == (
        "550.90.07",
        "96.00.CF.00.01",
        "cc",
    )
    assert first.status == "verified" and first.hardware_verified
    assert first.measurements.result == "matched"
    assert first.rim_ids == (DRIVER_RIM, VBIOS_RIM)
    assert first.ocsp == "good" and first.error is None
    assert second.status == "rejected" and not second.hardware_verified
    assert second.measurements.mismatched_indices == (9, 35)
    assert second.error is not None and second.error.code == "gpu_measurement_mismatch"
    assert not _verification([simulated_gpu()]).gpus[0].hardware_verified


def test_an_entry_that_does_not_say_verified_hardware_plainly_is_not() -> None:
    odd = [
        gpu_claim(0, status="Verified"),  # not a status of the contract
        {k: v for k, v in gpu_claim(1).items() if k != "simulated"},  # simulated missing
        gpu_claim(2, simulated="false"),  # a string is not false
        "GPU 3",  # not an object at all
    ]
    gpus = _verification(odd).gpus
    assert [gpu.hardware_verified for gpu in gpus] == [False, False, False, False]
    assert gpus[0].status == "rejected"
    assert gpus[1].simulated and gpus[2].simulated
    assert (gpus[3].index, gpus[3].status, gpus[3].ueid) == (3, "rejected", None)


def test_absent_or_malformed_claim_reads_as_no_gpus() -> None:
    assert _verification(...).gpus == ()
    assert _verification({"0": gpu_claim()}).gpus == ()
    assert _verification([]).gpus == ()


def test_json_carries_the_claim_as_given() -> None:
    gpus = [gpu_claim(0), simulated_gpu(1)]
    assert _verification(gpus).to_json()["gpus"] == gpus
    assert _verification([]).to_json()["gpus"] == []
    assert _verification(...).to_json()["gpus"] is None  # the verifier did not say


# --- the CLI section ----------------------------------------------------------------------------


def test_each_gpu_is_printed_with_every_field() -> None:
    out = _printed(_verification([gpu_claim(0), rejected_gpu(1), unattested_gpu(2)]))
    assert "3 GPUs" in out
    for expected in (
        "GPU 0",
        "VERIFIED",
        "hopper",
        HWMODEL,
        UEID,
        "550.90.07",
        "96.00.CF.00.01",
        "mode",
        "matched the RIMs",
        f"{DRIVER_RIM}, {VBIOS_RIM}",
        "OCSP",
        "good",
        "GPU 1",
        "REJECTED",
        "MISMATCHED at indices 9, 35",
        "gpu_measurement_mismatch: measurements differ",
        "GPU 2",
        "UNATTESTED",
        "not appraised",
        "not_checked",
    ):
        assert expected in out, expected
    assert "SIMULATED" not in out


def test_empty_and_absent_claims_are_told_apart() -> None:
    assert "no GPU evidence" in _printed(_verification([]))
    assert "not reported by the verifier" in _printed(_verification(...))


def test_the_verdict_line_names_simulated_unattested_and_rejected_gpus() -> None:
    assert gpu_note(_verification([gpu_claim(0), gpu_claim(1)])) == ""
    assert gpu_note(_verification([])) == ""
    note = gpu_note(_verification([simulated_gpu(0), unattested_gpu(1), rejected_gpu(2)]))
    assert note == "(simulated GPU: not hardware evidence; 1 GPU unattested; 1 GPU rejected)"
    assert "SIMULATED GPU" in _printed(_verification([simulated_gpu(0)]))


HOSTILE = "\x1b[2K\r\x1b[32mGPU 0 VERIFIED\x1b[0m [/] [green]ok[/green]\u202e"


def test_server_chosen_gpu_strings_are_escaped() -> None:
    entry = gpu_claim(
        0,
        hwmodel=HOSTILE,
        driver_version=HOSTILE,
        rim_ids=[HOSTILE],
        mode=HOSTILE,
        error={"code": HOSTILE, "message": HOSTILE},
    )
    out = _printed(_verification([entry]))
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
    assert "\\x1b[32mGPU 0 VERIFIED" in out
    assert "[/] [green]ok[/green]" in out  # literally: never markup


# --- end to end: a real server, a verifier whose token names GPUs --------------------------------


@pytest.fixture
def gpu_verifier(tmp_path: Path) -> Iterator[Callable[[object], Any]]:
    """A verifier signing affirming tokens whose ``gpus`` is what the test sets."""
    current: dict[str, object] = {"gpus": []}

    def edit(claims: dict[str, object]) -> None:
        claims["gpus"] = current["gpus"]

    fake = signing_verifier(TokenSigner.load_or_create(tmp_path / "v"), edit)
    with fake:

        def use(gpus: object) -> Any:
            current["gpus"] = gpus
            return fake

        yield use


def test_cllm_verify_shows_the_gpus_of_the_token(
    server: ServeProcess,
    gpu_verifier: Callable[[object], Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    gpus = [gpu_claim(0), simulated_gpu(1)]
    fake = gpu_verifier(gpus)
    assert main(["verify", server.url, "--verifier", fake.url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "affirming"
    assert doc["gpus"] == gpus

    assert main(["verify", server.url, "--verifier", fake.url]) == 0
    out = capsys.readouterr().out
    verdicts = [line for line in out.splitlines() if line.startswith("verdict  ")]
    assert len(verdicts) == 2
    assert all("(simulated GPU: not hardware evidence)" in line for line in verdicts)
    assert "2 GPUs" in out and "GPU 1" in out and "SIMULATED GPU" in out
    assert out.rstrip().splitlines()[-1].startswith("verdict  AFFIRMING")

    gpu_verifier([])
    assert main(["verify", server.url, "--verifier", fake.url]) == 0
    out = capsys.readouterr().out
    assert "no GPU evidence" in out
    assert "simulated GPU" not in out
