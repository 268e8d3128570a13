"""The `cllm gpu show|verify` and `cllm gpu rim verify` contract: keys, values, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from cllm.cli import main
from gpu_vectors import at, evidence, require

G = "reports/712fc6408be614ce.bin"
CHAIN = "chains/5ab4da5e3685f6e8.pem"
NONCE = "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e"
DRIVER = "rims/Driver_RIM_test_no_gpu.swidtag"
VBIOS = "rims/1010_0200_882_96005E0001_test_no_gpu.swidtag"
WHEN = "1690500000"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out)


def _p(relative: str) -> str:
    return str(require() / relative)


def test_show(capsys: pytest.CaptureFixture[str]) -> None:
    case = evidence("c438e7e714c05a9b")
    code, doc = _run(capsys, "gpu", "show", _p(case["report"]), "--json")
    assert code == 0
    assert doc["nonce"] == case["expected_nonce"]
    assert doc["driver_version"] == "550.90.07" and doc["vbios_version"] == "96.00.9F.00.01"
    assert doc["arch"] == "HOPPER" and doc["kind"] == "gsp" and doc["trailing_bytes"] == 0
    assert doc["driver_rim_id"] == "NV_GPU_DRIVER_GH100_550.90.07"
    assert doc["vbios_rim_id"] == "NV_GPU_VBIOS_1010_0200_882_96009F0001"
    assert len(doc["measurements"]) == 64


def test_show_unusable(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    bad = tmp_path / "r.bin"
    bad.write_bytes(b"\x11\xe0\x01")
    code, doc = _run(capsys, "gpu", "show", str(bad), "--json")
    assert code == 2 and doc["error"]["code"] == "gpu_report_truncated"


def test_verify_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["gpu", "verify", _p(G), "--chain", _p(CHAIN), "--nonce", NONCE]
    argv += ["--rim", _p(DRIVER), _p(VBIOS), "--ocsp", "off", "--at", WHEN, "--json"]
    code, doc = _run(capsys, *argv)
    assert code == 0, doc
    assert doc["ok"] is True and doc["error"] is None
    assert [s["name"] for s in doc["steps"]][-1] == "measurements"
    claims = doc["claims"]
    for key in ("arch", "driver_version", "vbios_version", "fwid", "ueid", "hwmodel"):
        assert key in claims
    assert claims["arch"] == "HOPPER" and claims["hwmodel"] == "GH100 A01 GSP BROM"
    assert claims["measurements"]["matched"] is True
    assert claims["measurements"]["mismatched_indices"] == []


def test_verify_measurement_mismatch(capsys: pytest.CaptureFixture[str]) -> None:
    prod = "rims/1010_0200_882_96005E0001_PROD.swidtag"
    argv = ["gpu", "verify", _p(G), "--chain", _p(CHAIN), "--nonce", NONCE]
    argv += ["--rim", _p(DRIVER), "--rim", _p(prod), "--ocsp", "off", "--at", WHEN, "--json"]
    code, doc = _run(capsys, *argv)
    assert code == 1
    assert doc["error"]["code"] == "gpu_measurement_mismatch"
    assert doc["claims"]["measurements"]["mismatched_indices"] == [1, 2, 3, 9]


def test_verify_rejections_and_unusable(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    case = evidence("c438e7e714c05a9b")
    base = ["gpu", "verify", _p(case["report"]), "--chain", _p(case["chain"]), "--ocsp", "off"]
    base += ["--at", str(at(case)), "--json"]
    code, doc = _run(capsys, *base, "--nonce", "00" * 32)
    assert code == 1 and doc["error"]["code"] == "gpu_nonce_mismatch"
    code, doc = _run(capsys, *base)
    assert code == 0 and doc["nonce_checked"] is False
    code, doc = _run(capsys, *base, "--nonce", "zz")
    assert code == 2 and doc["error"]["code"] == "nonce_invalid"
    junk = tmp_path / "chain.pem"
    junk.write_text("not a chain")
    argv = ["gpu", "verify", _p(case["report"]), "--chain", str(junk), "--ocsp", "off", "--json"]
    code, doc = _run(capsys, *argv)
    assert code == 2 and doc["error"]["code"] == "gpu_chain_malformed"
    pems = (require() / case["chain"]).read_text().split("-----END CERTIFICATE-----")
    four = tmp_path / "four.pem"
    four.write_text("-----END CERTIFICATE-----".join(pems[1:]))
    argv = ["gpu", "verify", _p(case["report"]), "--chain", str(four), "--ocsp", "off", "--json"]
    code, doc = _run(capsys, *argv)
    assert code == 1 and doc["error"]["code"] == "gpu_chain_length"
    trailing = evidence("d414ec6b6ec1fa0e")
    argv = ["gpu", "verify", _p(trailing["report"]), "--chain", _p(trailing["chain"])]
    code, doc = _run(capsys, *argv, "--ocsp", "off", "--json")
    assert code == 2 and doc["error"]["code"] == "gpu_report_trailing_bytes"


def test_verify_ocsp_required_from_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = evidence("c438e7e714c05a9b")
    junk = tmp_path / "answer.der"
    junk.write_bytes(b"\x30\x03\x0a\x01\x06")  # OCSPResponse: unauthorized
    argv = ["gpu", "verify", _p(case["report"]), "--chain", _p(case["chain"])]
    argv += ["--ocsp-response", str(junk), "--at", str(at(case)), "--json"]
    # The answer covers no certificate; the responder URL is a closed loopback port.
    monkeypatch.setenv("CLLM_GPU_OCSP_URL", "http://127.0.0.1:9/")
    code, doc = _run(capsys, *argv)
    assert code == 1 and doc["error"]["code"] == "gpu_ocsp_unavailable"
    code, doc = _run(capsys, *argv, "--ocsp", "allow-unknown")
    assert code == 0 and doc["claims"]["ocsp"] == "unavailable"


def test_rim_verify(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = _run(capsys, "gpu", "rim", "verify", _p(VBIOS), "--at", WHEN, "--json")
    assert code == 0
    assert doc["ok"] is True and doc["kind"] == "vbios" and doc["version"] == "96.00.5E.00.01"
    assert doc["active_indices"] == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12]
    # One second after the signer expired (2025-06-22T09:38:54Z).
    code, doc = _run(capsys, "gpu", "rim", "verify", _p(VBIOS), "--at", "1750585135", "--json")
    assert code == 1 and doc["error"]["code"] == "gpu_rim_cert_expired"
    # Times outside datetime's range are still answered with a code, not a traceback.
    code, doc = _run(capsys, "gpu", "rim", "verify", _p(VBIOS), "--at", str(10**15), "--json")
    assert code == 1 and doc["error"]["code"] == "gpu_rim_cert_expired"
    edited = "rims/NV_GPU_DRIVER_GH100_535.86.09_measurement_mismatch.xml"
    code, doc = _run(capsys, "gpu", "rim", "verify", _p(edited), "--json")
    assert code == 1 and doc["error"]["code"] == "gpu_rim_digest_mismatch"


def test_rim_verify_unusable(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    bad = tmp_path / "rim.xml"
    bad.write_text("<x")
    code, doc = _run(capsys, "gpu", "rim", "verify", str(bad), "--json")
    assert code == 2 and doc["error"]["code"] == "gpu_rim_malformed"


def test_cli_subprocess_human_output() -> None:
    require()
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cllm.cli import main; sys.exit(main())",
            "gpu",
            "verify",
            _p(G),
            "--chain",
            _p(CHAIN),
            "--nonce",
            NONCE,
            "--ocsp",
            "off",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "verified" in out.stdout and "measurements not appraised" in out.stdout
    assert "OCSP is off" in out.stderr  # weakening is logged


def test_rim_service_unreachable_is_unusable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLLM_GPU_RIM_URL", "http://127.0.0.1:9")
    argv = ["gpu", "verify", _p(G), "--chain", _p(CHAIN), "--nonce", NONCE, "--ocsp", "off"]
    code, doc = _run(capsys, *argv, "--at", WHEN, "--json")
    assert code == 2 and doc["error"]["code"] == "gpu_rim_fetch"
