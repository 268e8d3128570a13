"""The `cllm quote show|verify` contract that outside checks call: keys, values, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cllm.cli import main
from vectors import case, require_vectors

TDX_KEYS = {
    "version",
    "tee_type",
    "mrtd",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "rtmr3",
    "report_data",
    "td_attributes",
    "xfam",
    "mr_seam",
    "tee_tcb_svn",
    "mr_config_id",
    "mr_owner",
    "mr_owner_config",
    "fmspc",
}
SGX_KEYS = {
    "mr_enclave",
    "mr_signer",
    "isv_prod_id",
    "isv_svn",
    "attributes",
    "report_data",
    "fmspc",
}
VERIFY_KEYS = {"ok", "tcb_status", "advisory_ids", "error", "steps", "td", "collateral_expires"}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if "--json" in argv else out


def _verify(
    capsys: pytest.CaptureFixture[str], quote: str, collateral: str, at: int, *extra: str
) -> tuple[int, Any]:
    """`cllm quote verify ... --json` in process."""
    argv = ("quote", "verify", quote, "--collateral", collateral, "--at", str(at), *extra)
    return _run(capsys, *argv, "--json")


def _paths(case_id: str) -> tuple[str, str, dict[str, Any]]:
    root = require_vectors()
    entry = case(case_id)
    return str(root / entry["quote"]), str(root / entry["collateral"]), entry


@pytest.mark.parametrize("case_id", ["gotdxguest-cos113@20250604", "gotdxguest-v5-sample@20260218"])
def test_show_tdx(capsys: pytest.CaptureFixture[str], case_id: str) -> None:
    quote, _, entry = _paths(case_id)
    code, doc = _run(capsys, "quote", "show", quote, "--json")
    assert code == 0
    assert doc.keys() >= TDX_KEYS
    for key in TDX_KEYS - {"fmspc"}:
        assert doc[key] == entry["report"][key], key
    assert doc["fmspc"] == entry["fmspc"].lower()
    hex_values = [v for k, v in doc.items() if isinstance(v, str) and k != "fmspc_error"]
    assert all(v == v.lower() for v in hex_values)


def test_show_sgx(capsys: pytest.CaptureFixture[str]) -> None:
    quote, _, entry = _paths("dcapqvl-sgx-quote@20250619")
    code, doc = _run(capsys, "quote", "show", quote, "--json")
    assert code == 0
    assert doc.keys() >= SGX_KEYS
    for key in SGX_KEYS - {"fmspc"}:
        assert doc[key] == entry["report"][key], key


def test_show_malformed_quote_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x04\x00" + bytes(10))
    code, doc = _run(capsys, "quote", "show", str(bad), "--json")
    assert code == 2
    assert doc["error"]["code"] == "quote_truncated"


def test_verify_ok(capsys: pytest.CaptureFixture[str]) -> None:
    quote, collateral, entry = _paths("gotdxguest-cos113@20250604")
    code, doc = _verify(capsys, quote, collateral, entry["at"])
    assert code == 0
    assert doc.keys() >= VERIFY_KEYS
    assert doc["ok"] is True
    assert doc["tcb_status"] == "UpToDate"
    assert doc["error"] is None
    assert doc["td"] == entry["td"]
    assert doc["collateral_expires"] == entry["window"]["not_after"]
    assert [s["name"] for s in doc["steps"]][:3] == ["parse_quote", "parse_collateral", "pck_chain"]
    assert all(step["ok"] for step in doc["steps"])


def test_verify_advisories_and_sgx(capsys: pytest.CaptureFixture[str]) -> None:
    quote, collateral, entry = _paths("dcapqvl-sgx-quote@20250619")
    code, doc = _verify(capsys, quote, collateral, entry["at"])
    assert code == 0
    assert doc["tcb_status"] == entry["expect"]["tcb_status"]
    assert sorted(doc["advisory_ids"]) == sorted(entry["expect"]["advisory_ids"])
    assert doc["td"] is None


@pytest.mark.parametrize(("delta", "code_name"), [(1, "expired"), (-1, "not_yet_valid")])
def test_verify_outside_window_exits_1(
    capsys: pytest.CaptureFixture[str], delta: int, code_name: str
) -> None:
    quote, collateral, entry = _paths("gotdxguest-cos113@20250604")
    at = entry["window"]["not_after" if delta > 0 else "not_before"] + delta
    code, doc = _verify(capsys, quote, collateral, at)
    assert code == 1
    assert doc["ok"] is False
    assert doc["error"]["code"] == code_name
    assert doc["steps"][-1]["ok"] is False


def test_verify_tcb_not_supported_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    quote, collateral, entry = _paths("dcapqvl-tdx-quote-outdated-v5@20260218")
    code, doc = _verify(capsys, quote, collateral, entry["at"])
    assert code == 1
    assert doc["error"]["code"] == "tcb_not_supported"
    assert doc["tcb_status"] is None


def test_verify_unusable_inputs_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    quote, collateral, entry = _paths("gotdxguest-cos113@20250604")
    at = entry["at"]
    code, doc = _verify(capsys, str(tmp_path / "missing"), collateral, at)
    assert (code, doc["error"]["code"]) == (2, "file_unreadable")
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(Path(quote).read_bytes()[:-1])
    code, doc = _verify(capsys, str(truncated), collateral, at)
    assert (code, doc["error"]["code"]) == (2, "quote_truncated")
    broken = tmp_path / "collateral.json"
    broken.write_text("{")
    code, doc = _verify(capsys, quote, str(broken), at)
    assert (code, doc["error"]["code"]) == (2, "collateral_format")
    v2_quote, v2_collateral, v2 = _paths("automata-godcap-sgx@20250213")
    code, doc = _verify(capsys, v2_quote, v2_collateral, v2["at"])
    assert (code, doc["error"]["code"]) == (2, "unsupported_collateral_format")


def test_verify_with_other_root_rejects_intel_quote(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from cllm.tee import SimulatedDcap

    quote, collateral, entry = _paths("gotdxguest-cos113@20250604")
    root = tmp_path / "root.pem"
    sim = SimulatedDcap.from_seed(
        b"cli-test",
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2040, 1, 1, tzinfo=UTC),
    )
    root.write_bytes(sim.trust_root().certificate.public_bytes(Encoding.PEM))
    code, doc = _verify(capsys, quote, collateral, entry["at"], "--root-ca", str(root))
    assert code == 1
    assert doc["error"]["code"] == "chain_untrusted"


def test_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    quote, collateral, entry = _paths("gotdxguest-cos113@20250604")
    code, out = _run(
        capsys, "quote", "verify", quote, "--collateral", collateral, "--at", str(entry["at"])
    )
    assert code == 0
    assert "verified" in out
    assert "UpToDate" in out
    code, out = _run(capsys, "quote", "show", quote)
    assert code == 0
    assert entry["report"]["mrtd"] in out.replace("\n", "").replace(" ", "").replace("│", "")


def test_console_script_is_installed() -> None:
    quote, collateral, entry = _paths("gotdxguest-cos113@20250604")
    exe = shutil.which("cllm") or str(Path(sys.executable).parent / "cllm")
    done = subprocess.run(
        [
            exe,
            "quote",
            "verify",
            quote,
            "--collateral",
            collateral,
            "--at",
            str(entry["at"]),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True


def test_verify_simulated_quote_under_its_own_root(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Corpus-free: a quote of the simulated DCAP world, through the CLI."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from cllm.tee import SIMULATED_QE_VENDOR_ID, SimulatedDcap

    start = datetime(2025, 1, 1, tzinfo=UTC)
    sim = SimulatedDcap.from_seed(
        b"cli", not_before=start, not_after=datetime(2026, 1, 1, tzinfo=UTC)
    )
    quote, collateral, root = tmp_path / "q.bin", tmp_path / "c.json", tmp_path / "root.pem"
    quote.write_bytes(sim.quote(report_data=bytes(64)))
    collateral.write_text(json.dumps(sim.collateral().to_json_dict()))
    root.write_bytes(sim.trust_root().certificate.public_bytes(Encoding.PEM))
    at = int(start.timestamp()) + 86400
    args = (str(quote), str(collateral), at, "--root-ca", str(root))

    code, doc = _verify(capsys, *args, "--qe-vendor-id", SIMULATED_QE_VENDOR_ID.hex())
    assert (code, doc["ok"], doc["tcb_status"]) == (0, True, "UpToDate")
    code, doc = _verify(capsys, *args)  # cllm's simulation root implies the simulated QE
    assert (code, doc["ok"]) == (0, True)
    intel_qe = "939a7233f79c4ca9940a0db3957f0607"
    code, doc = _verify(capsys, *args, "--qe-vendor-id", intel_qe)
    assert (code, doc["error"]["code"]) == (1, "qe_vendor_mismatch")
    code, doc = _verify(capsys, *args, "--allow-any-qe-vendor")
    assert (code, doc["ok"]) == (0, True)
    code, doc = _verify(capsys, str(quote), str(collateral), at)  # Intel root: never trusted
    assert (code, doc["error"]["code"]) == (1, "chain_untrusted")
