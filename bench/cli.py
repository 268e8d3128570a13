"""Benchmark: the one-shot CLI, whole processes, against a one-shot dcap-qvl script.

What a CLI user or a CI job pays every time it verifies one quote: start Python, import, read the
quote and its collateral, verify, print. Timed as whole processes (wall time), interleaved so the
machine's drift hits every side alike, ``--repeat`` rounds; medians.

* ``cllm quote verify QUOTE --collateral FILE --at T --json`` and the same without ``--json``
  (rich's table), on a corpus quote with its collateral;
* a one-shot Python process that verifies the same quote with dcap-qvl (the reference);
* ``cllm --help``;
* for the breakdown: Python's own start-up (``python -c pass``), a process that only imports
  ``cryptography.x509`` (what any X.509 verification with pyca/cryptography pays before its
  first certificate), and one that only imports ``dcap_qvl``.

Bytecode: every process runs with ``PYTHONPYCACHEPREFIX`` set to a fresh directory and bytecode
writing on, so the warm-up round compiles each module once and the measured rounds read
bytecode, as an installed package does (pip compiles it at install). Without this, a shell
with ``PYTHONDONTWRITEBYTECODE=1`` (and a source checkout, which has no bytecode) compiles
every cllm module from source in every process. Nothing else is kept between processes.

Goals: ``quote verify`` at most 1.5x the dcap-qvl process; ``cllm --help`` under 150 ms.

Usage: ``python bench/cli.py [--json] [--repeat N] [--case ID]``. Needs the corpus
(../shared/tdx-vectors or $CLLM_VECTORS) and dcap-qvl (the dev extra).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _procs import cllm_command

REPO = Path(__file__).resolve().parent.parent

_QVL_ONE_SHOT = """
import sys
import dcap_qvl
quote = open(sys.argv[1], "rb").read()
collateral = dcap_qvl.QuoteCollateralV3.from_json(open(sys.argv[2]).read())
report = dcap_qvl.verify(quote, collateral, int(sys.argv[3]))
print(report.status)
"""


def corpus() -> Path:
    configured = os.environ.get("CLLM_VECTORS")
    found = Path(configured) if configured else REPO.parent / "shared" / "tdx-vectors"
    if not (found / "cases.json").is_file():
        raise SystemExit(f"corpus not found at {found} (set CLLM_VECTORS)")
    return found


def pick_case(root: Path, case_id: str | None) -> dict[str, Any]:
    cases = json.loads((root / "cases.json").read_text())["cases"]
    for case in cases:
        if case_id is not None and case["id"] != case_id:
            continue
        if case_id is None and not (
            case["kind"].startswith("tdx") and case["expect"]["tcb_status"] == "UpToDate"
        ):
            continue
        return dict(case)
    raise SystemExit(f"no such case: {case_id}")


def timed(argv: list[str], expect: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    elapsed = time.perf_counter() - start
    if expect not in done.stdout:
        raise SystemExit(f"{argv[:3]}... did not print {expect!r}: {done.stdout[-300:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--case", default=None)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    root = corpus()
    case = pick_case(root, args.case)
    quote, collateral, at = root / case["quote"], root / case["collateral"], str(case["at"])
    cllm = cllm_command()
    verify = [*cllm, "quote", "verify", str(quote), "--collateral", str(collateral), "--at", at]
    sides: dict[str, tuple[list[str], str]] = {
        "dcap_qvl_one_shot": (
            [sys.executable, "-c", _QVL_ONE_SHOT, str(quote), str(collateral), at],
            "UpToDate",
        ),
        "cllm_quote_verify_json": ([*verify, "--json"], "UpToDate"),
        "cllm_quote_verify": (verify, "UpToDate"),
        "cllm_help": ([*cllm, "--help"], "COMMAND"),
        "python_floor": ([sys.executable, "-c", "print('ok')"], "ok"),
        "python_import_x509": (
            [sys.executable, "-c", "import cryptography.x509; print('ok')"],
            "ok",
        ),
        "python_import_dcap_qvl": ([sys.executable, "-c", "import dcap_qvl; print('ok')"], "ok"),
    }
    samples: dict[str, list[float]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="cllm-bench-pyc-") as pycache:
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pycache
        for argv, expect in sides.values():  # warm the page cache and compile bytecode once
            timed(argv, expect, env)
        for _ in range(args.repeat):
            for name, (argv, expect) in sides.items():
                samples[name].append(timed(argv, expect, env))

    medians = {name: statistics.median(values) for name, values in samples.items()}
    reference = medians["dcap_qvl_one_shot"]
    result = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        },
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "case": case["id"],
        "repeat": args.repeat,
        "median_ms": {name: round(value * 1000, 1) for name, value in medians.items()},
        "ratio_json": round(medians["cllm_quote_verify_json"] / reference, 2),
        "ratio_table": round(medians["cllm_quote_verify"] / reference, 2),
        "goals": {
            "quote_verify_at_most_1_5x": medians["cllm_quote_verify_json"] <= 1.5 * reference,
            "help_under_150_ms": medians["cllm_help"] < 0.150,
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"case {case['id']}, {args.repeat} interleaved rounds, median wall time per process")
        for name, value in result["median_ms"].items():
            print(f"  {name:<24} {value:8.1f} ms")
        print(
            f"  quote verify / dcap-qvl: {result['ratio_json']} (--json), "
            f"{result['ratio_table']} (table); goal <= 1.5"
        )
        print(f"  goals met: {result['goals']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
