"""Benchmark: cllm's DCAP quote verifier against dcap-qvl on the tdx-vectors corpus.

For every case in the corpus's ``cases.json`` (real quotes with Intel-signed collateral), in one
process on one machine, this measures:

* **agreement** - whether ``cllm.verify.QuoteVerifier`` and ``dcap_qvl.verify`` reach the same
  verdict, (ok, TCB status), at the case's evaluation time ``at``. Cases where dcap-qvl rejects the
  quote for TD / enclave *policy* (debug, SEPT_VE_DISABLE = 0, non-zero MRSERVICETD) are left out:
  cllm separates verification from policy and returns the TCB status for those.
* **time per quote** - wall time of one ``verify`` call with the collateral already loaded (cllm:
  ``load_collateral`` once per case; dcap-qvl: ``QuoteCollateralV3`` built once per case), after
  one warm-up call per case, so cllm's caches of validated chains and decoded collateral are warm.
  The two verifiers are timed alternately, ``--repeat`` times per case. "Cold" is one call on a
  fresh ``QuoteVerifier`` (empty caches) and dcap-qvl's first call for the case.
* **floor** - the two ECDSA P-256 verifications every quote needs (attestation key over
  header || body, PCK key over the 384-byte QE report), each with its raw r || s signature
  converted to DER, with ``cryptography``. No verifier can be cheaper than this.

Usage: ``python bench/verify.py [--json] [--repeat N] [--vectors PATH]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from rich.console import Console
from rich.table import Table

from cllm.errors import CllmError
from cllm.quote import parse_pck_chain, parse_quote
from cllm.verify import Collateral, QuoteVerifier, intel_root, load_collateral

try:
    import dcap_qvl  # type: ignore[import-untyped]  # ships a .pyi but no py.typed
except ImportError:  # pragma: no cover - dev dependency
    sys.exit("dcap-qvl is not installed; install the dev extras: pip install -e '.[dev]'")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VECTORS = REPO.parent / "shared" / "tdx-vectors"
DEFAULT_REPEAT = 20

# dcap-qvl's TD / enclave policy checks (src/verify.rs), run after every signature, chain and TCB
# step has passed. Message fragment -> the corpus fact that explains it.
POLICY_REJECTIONS = {
    "Debug mode is enabled": "debug",
    "SEPT_VE_DISABLE is not enabled": "sept_ve_disable=false",
    "Invalid MR service TD": "mr_servicetd_zero=false",
}

_SHA256 = ec.ECDSA(hashes.SHA256())


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    kind: str
    at: int
    quote: bytes
    collateral_path: Path
    oracle: str  # oracle.dcap_qvl as recorded in the corpus
    facts: dict[str, bool]  # td / enclave policy facts


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    status: str | None
    detail: str | None = None  # error code (cllm) or message (dcap-qvl)
    advisory_ids: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "status": self.status, "error": self.detail}


@dataclass(slots=True)
class CaseResult:
    case: Case
    cllm: Verdict
    dcap: Verdict
    cllm_ns: list[int] = field(default_factory=list)
    dcap_ns: list[int] = field(default_factory=list)
    floor_ns: list[int] = field(default_factory=list)
    cllm_cold_ns: int | None = None
    dcap_cold_ns: int | None = None
    cache_changed_verdict: bool = False

    @property
    def policy_rejection(self) -> str | None:
        """The policy reason when dcap-qvl rejected the quote for TD / enclave policy."""
        if self.dcap.ok or self.dcap.detail is None:
            return None
        return next((r for m, r in POLICY_REJECTIONS.items() if m in self.dcap.detail), None)

    @property
    def agrees(self) -> bool:
        return self.cllm.ok == self.dcap.ok and (
            not self.cllm.ok or self.cllm.status == self.dcap.status
        )


# -- corpus ------------------------------------------------------------------------------------


def find_vectors(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("CLLM_VECTORS")
    return Path(env) if env else DEFAULT_VECTORS


def load_cases(root: Path) -> list[Case]:
    doc = json.loads((root / "cases.json").read_text())
    cases = []
    for c in doc["cases"]:
        facts = c.get("td") or c.get("enclave") or {}
        cases.append(
            Case(
                id=c["id"],
                kind=c["kind"],
                at=int(c["at"]),
                quote=(root / c["quote"]).read_bytes(),
                collateral_path=root / c["collateral"],
                oracle=c["oracle"]["dcap_qvl"],
                facts={k: bool(v) for k, v in facts.items()},
            )
        )
    return cases


def oracle_text(verdict: Verdict) -> str:
    """A dcap-qvl verdict in the corpus's ``oracle.dcap_qvl`` notation."""
    if verdict.ok:
        return verdict.status or ""
    lines = (line.strip() for line in (verdict.detail or "").splitlines())
    return "error: " + " | ".join(line for line in lines if line)


# -- the verifiers and the floor ---------------------------------------------------------------


def run_cllm(verifier: QuoteVerifier, quote: bytes, collateral: Collateral, at: int) -> Verdict:
    try:
        r = verifier.verify(quote, collateral, at=at)
    except Exception as exc:  # a bug in cllm; record it instead of aborting the run
        return Verdict(False, None, f"uncaught {type(exc).__name__}: {exc}")
    status = r.tcb_status.value if r.tcb_status is not None else None
    code = r.error.code if r.error is not None else None
    return Verdict(r.ok, status, code, frozenset(r.advisory_ids))


def run_dcap(quote: bytes, collateral: Any, at: int) -> Verdict:
    try:
        report = dcap_qvl.verify(quote, collateral, at)
    except Exception as exc:  # dcap-qvl reports every failure as ValueError
        return Verdict(False, None, str(exc))
    return Verdict(True, report.status, None, frozenset(report.advisory_ids))


def floor_call(quote: bytes) -> Callable[[], None] | None:
    """The two ECDSA verifications of ``quote``, keys and messages extracted beforehand."""
    try:
        parsed = parse_quote(quote)
        sig = parsed.signature_data
        pck_key = parse_pck_chain(sig.certification)[0].public_key()
        att_key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + sig.attestation_key
        )
    except (CllmError, ValueError):
        return None
    if not isinstance(pck_key, ec.EllipticCurvePublicKey):
        return None
    signed, quote_sig = parsed.signed_data, sig.signature
    qe_report, qe_sig = sig.qe_report.raw, sig.qe_report_signature

    def verify_both() -> None:
        for key, raw, message in ((att_key, quote_sig, signed), (pck_key, qe_sig, qe_report)):
            r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            der = encode_dss_signature(r, s)
            key.verify(der, message, _SHA256)

    return verify_both


def bench_case(verifier: QuoteVerifier, case: Case, repeat: int) -> CaseResult:
    try:
        ours = load_collateral(case.collateral_path)
        theirs = dcap_qvl.QuoteCollateralV3.from_json(case.collateral_path.read_text())
    except (CllmError, ValueError) as exc:  # not timed: one side cannot even load it
        failed = Verdict(False, None, f"collateral load: {exc}")
        return CaseResult(case, failed, failed)
    quote, at = case.quote, case.at
    clock = time.perf_counter_ns

    # Cold: one call on a fresh verifier with empty caches; for dcap-qvl, its first call.
    fresh = QuoteVerifier(trust_root=verifier.trust_root)
    t0 = clock()
    cold = run_cllm(fresh, quote, ours, at)
    t1 = clock()
    dcap_verdict = run_dcap(quote, theirs, at)
    t2 = clock()
    # Warm-up of the long-lived verifier; its verdict is the one compared.
    cllm_verdict = run_cllm(verifier, quote, ours, at)
    result = CaseResult(
        case, cllm_verdict, dcap_verdict, cllm_cold_ns=t1 - t0, dcap_cold_ns=t2 - t1
    )

    floor = floor_call(quote)
    if floor is not None:
        try:
            floor()  # warm-up
        except InvalidSignature:
            floor = None  # nothing to measure: the quote's signatures do not verify
    gc.collect()
    last = cllm_verdict
    for _ in range(repeat):
        t0 = clock()
        last = run_cllm(verifier, quote, ours, at)
        t1 = clock()
        run_dcap(quote, theirs, at)
        t2 = clock()
        result.cllm_ns.append(t1 - t0)
        result.dcap_ns.append(t2 - t1)
        if floor is not None:
            t0 = clock()
            floor()
            result.floor_ns.append(clock() - t0)
    result.cache_changed_verdict = len({cold, cllm_verdict, last}) > 1
    return result


# -- report ------------------------------------------------------------------------------------


def ms(samples: Sequence[int], q: float = 0.5) -> float | None:
    """Quantile ``q`` of nanosecond samples, in milliseconds."""
    if not samples:
        return None
    if q == 0.5 or len(samples) < 2:
        return round(statistics.median(samples) / 1e6, 4)
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return round(cuts[round(q * 100) - 1] / 1e6, 4)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def summarize(results: list[CaseResult], repeat: int, vectors: Path) -> dict[str, Any]:
    compared = [r for r in results if r.policy_rejection is None]
    agreed = [r for r in compared if r.agrees]
    cllm_ns = [t for r in results for t in r.cllm_ns]
    dcap_ns = [t for r in results for t in r.dcap_ns]
    floor_ns = [t for r in results for t in r.floor_ns]
    cllm_med, dcap_med, floor_med = ms(cllm_ns), ms(dcap_ns), ms(floor_ns)
    by_kind: dict[str, dict[str, Any]] = {}
    for kind in sorted({r.case.kind for r in results}):
        group = [r for r in results if r.case.kind == kind]
        by_kind[kind] = {
            "cases": len(group),
            "cllm_median_ms": ms([t for r in group for t in r.cllm_ns]),
            "dcap_qvl_median_ms": ms([t for r in group for t in r.dcap_ns]),
        }
    return {
        "cases": len(results),
        "agreement": round(len(agreed) / len(compared), 4) if compared else None,
        "cllm_median_ms": cllm_med,
        "dcap_qvl_median_ms": dcap_med,
        "speedup": ratio(dcap_med, cllm_med),
        "compared": len(compared),
        "agreed": len(agreed),
        "policy_rejections": len(results) - len(compared),
        "disagreements": [
            {"id": r.case.id, "cllm": r.cllm.to_dict(), "dcap_qvl": r.dcap.to_dict()}
            for r in compared
            if not r.agrees
        ],
        "advisory_ids_differ": [
            r.case.id
            for r in compared
            if r.agrees and r.cllm.ok and r.cllm.advisory_ids != r.dcap.advisory_ids
        ],
        "policy_rejections_without_corpus_fact": [
            r.case.id for r in results if r.policy_rejection and not _fact_explains(r)
        ],
        "dcap_qvl_differs_from_corpus_oracle": [
            r.case.id for r in results if oracle_text(r.dcap) != r.case.oracle
        ],
        "cllm_verdict_changed_when_cached": [r.case.id for r in results if r.cache_changed_verdict],
        "cllm_p90_ms": ms(cllm_ns, 0.9),
        "dcap_qvl_p90_ms": ms(dcap_ns, 0.9),
        "floor_median_ms": floor_med,
        "floor_p90_ms": ms(floor_ns, 0.9),
        "cllm_over_floor": ratio(cllm_med, floor_med),
        "dcap_qvl_over_floor": ratio(dcap_med, floor_med),
        "cllm_cold_median_ms": ms([r.cllm_cold_ns for r in results if r.cllm_cold_ns is not None]),
        "dcap_qvl_cold_median_ms": ms(
            [r.dcap_cold_ns for r in results if r.dcap_cold_ns is not None]
        ),
        "by_kind": by_kind,
        "repeat": repeat,
        "timed_calls_per_verifier": len(cllm_ns),
        "untimed_cases": [r.case.id for r in results if not r.cllm_ns],
        "vectors": str(vectors),
        "python": platform.python_version(),
        "cryptography": version("cryptography"),
        "dcap_qvl": version("dcap-qvl"),
    }


def _fact_explains(r: CaseResult) -> bool:
    """Does the corpus's td / enclave fact back dcap-qvl's policy rejection?"""
    facts = r.case.facts
    match r.policy_rejection:
        case "debug":
            return facts.get("debug", False)
        case "sept_ve_disable=false":
            return facts.get("sept_ve_disable") is False
        case "mr_servicetd_zero=false":
            return facts.get("mr_servicetd_zero") is False
    return False


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_report(summary: dict[str, Any], results: list[CaseResult], console: Console) -> None:
    s = summary
    timing = Table(
        title=f"DCAP quote verification: {s['cases']} cases, {s['repeat']} timed calls each"
    )
    for column in ("", "median ms", "p90 ms", "cold median ms", "vs floor"):
        timing.add_column(column, justify="right" if column else "left")
    for name, key in (("cllm", "cllm"), ("dcap-qvl", "dcap_qvl")):
        timing.add_row(
            name,
            _ms(s[f"{key}_median_ms"]),
            _ms(s[f"{key}_p90_ms"]),
            _ms(s[f"{key}_cold_median_ms"]),
            _x(s[f"{key}_over_floor"]),
        )
    timing.add_row("floor: 2 ECDSA verifies", _ms(s["floor_median_ms"]), _ms(s["floor_p90_ms"]))
    console.print(timing)
    console.print(f"speedup (dcap-qvl median / cllm median): [bold]{_x(s['speedup'])}[/]")

    kinds = Table(title="median ms by quote kind")
    for column in ("kind", "cases", "cllm", "dcap-qvl"):
        kinds.add_column(column, justify="left" if column == "kind" else "right")
    for kind, row in s["by_kind"].items():
        kinds.add_row(
            kind, str(row["cases"]), _ms(row["cllm_median_ms"]), _ms(row["dcap_qvl_median_ms"])
        )
    console.print(kinds)

    console.print(
        f"agreement: [bold]{s['agreed']}/{s['compared']}[/] = {s['agreement']} "
        f"({s['policy_rejections']} dcap-qvl policy rejections left out)"
    )
    if s["disagreements"]:
        table = Table(title="disagreements")
        for column in ("case", "cllm ok", "cllm status", "cllm error", "dcap-qvl"):
            table.add_column(column)
        for r in results:
            if r.policy_rejection is None and not r.agrees:
                table.add_row(
                    r.case.id,
                    str(r.cllm.ok),
                    r.cllm.status or "-",
                    r.cllm.detail or "-",
                    oracle_text(r.dcap),
                )
        console.print(table)
    for key, label in (
        ("advisory_ids_differ", "same verdict, different advisory IDs"),
        ("dcap_qvl_differs_from_corpus_oracle", "dcap-qvl verdict differs from oracle.dcap_qvl"),
        ("policy_rejections_without_corpus_fact", "policy rejection not backed by a td fact"),
        ("cllm_verdict_changed_when_cached", "cllm verdict differs between cold and cached calls"),
        ("untimed_cases", "not timed (collateral did not load)"),
    ):
        if s[key]:
            console.print(f"[yellow]{label}:[/] {', '.join(s[key])}")
    console.print(
        f"[dim]Python {s['python']}, cryptography {s['cryptography']}, dcap-qvl {s['dcap_qvl']}, "
        f"vectors {s['vectors']}[/]"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--repeat", type=int, default=DEFAULT_REPEAT, help="timed calls per case (default 20)"
    )
    parser.add_argument(
        "--vectors", help="tdx-vectors directory (default: $CLLM_VECTORS or ../shared/tdx-vectors)"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    vectors = find_vectors(args.vectors)
    if not (vectors / "cases.json").is_file():
        message = f"tdx-vectors corpus not found at {vectors} (set --vectors or $CLLM_VECTORS)"
        print(message, file=sys.stderr)
        if args.json:
            empty = dict.fromkeys(("agreement", "cllm_median_ms", "dcap_qvl_median_ms", "speedup"))
            print(json.dumps({"cases": 0, **empty, "error": message}))
        return 0

    cases = load_cases(vectors)
    verifier = QuoteVerifier(trust_root=intel_root())
    results = [bench_case(verifier, case, args.repeat) for case in cases]
    summary = summarize(results, args.repeat, vectors)
    if args.json:
        print(json.dumps(summary))
    else:
        print_report(summary, results, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
