"""Benchmark: the worst certificate chain an attacker can build, against a genuine one.

The quote's PCK chain and every PEM chain in carried collateral are chosen by whoever sends the
evidence. Since chains have a fixed shape (issue 14: no path building), the goal is that no
chain costs more than twice a genuine one. Each variant is one full ``QuoteVerifier.verify`` of a
simulated quote on a *fresh* verifier (empty caches: an attacker varies its bytes on every
request, so the hostile input is never cached, and neither is the genuine one here), timed
interleaved with the others, ``--repeat`` times. Reported: the median per variant and its ratio
to the genuine quote. With the corpus, a real Intel quote and collateral are timed the same way.

``--path-building`` also times, once each, what ``cryptography``'s path builder (what cllm used
before) spends on the 3- and 4-certificate PCK bombs: the reference the fixed shape replaces.

Usage: ``python bench/chains.py [--json] [--repeat N] [--path-building]``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import hostile_chains as hc  # noqa: E402  (a test helper, shared with the tests)
from cllm.tee import SimulatedDcap  # noqa: E402
from cllm.verify import Collateral, QuoteVerifier, intel_root, load_collateral  # noqa: E402

DEFAULT_VECTORS = REPO.parent / "shared" / "tdx-vectors"
DEFAULT_REPEAT = 100
GOAL = 2.0
AT = datetime(2026, 1, 1, tzinfo=UTC)
REPORT_DATA = hashlib.sha512(b"bench").digest()


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    quote: bytes
    collateral: Collateral
    expect: str | None  # the error code, None for a genuine quote
    verifier: Callable[[], QuoteVerifier]
    at: int | datetime = AT


def _variants(sim: SimulatedDcap) -> list[Variant]:
    genuine = sim.quote(report_data=REPORT_DATA)
    collateral = sim.collateral()

    def fresh() -> QuoteVerifier:
        return QuoteVerifier(trust_root=sim.trust_root())

    out = [Variant("genuine simulated quote", genuine, collateral, None, fresh)]
    for total in range(3, 9):
        quote = hc.quote_with_chain(sim, hc.pck_bomb(sim, total), REPORT_DATA)
        out.append(
            Variant(
                f"PCK chain bomb, {total} certs", quote, collateral, "chain_shape_invalid", fresh
            )
        )
    for total in (3, 8):
        out.append(
            Variant(
                f"TCB info chain bomb, {total} certs",
                genuine,
                dataclasses.replace(collateral, tcb_info_issuer_chain=hc.signing_bomb(sim, total)),
                "chain_shape_invalid",
                fresh,
            )
        )
        out.append(
            Variant(
                f"PCK CRL chain bomb, {total} certs",
                genuine,
                dataclasses.replace(collateral, pck_crl_issuer_chain=hc.crl_bomb(sim, total)),
                "chain_shape_invalid",
                fresh,
            )
        )
    padded = hc.certificate(
        subject=sim.pck_certificate.subject,
        key=hc.derived_key("padded"),
        issuer=sim.pck_ca_certificate.subject,
        issuer_key=hc.private(sim, "pck_ca"),
        serial=5,
        ca=False,
        extra=(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.1"), bytes(9000)),),
    )
    big = hc.pem([padded, sim.pck_ca_certificate, sim.root_certificate])  # just under the cap
    out.append(
        Variant(
            f"PCK chain of {len(big) // 1024} KiB (largest accepted shape)",
            hc.quote_with_chain(sim, big, REPORT_DATA),
            collateral,
            "pck_extension_malformed",  # the chain itself passes: the most work it can cause
            fresh,
        )
    )
    leaf_signed = dataclasses.replace(
        collateral,
        tcb_info_signature=hc.sign_raw(hc.private(sim, "pck"), collateral.tcb_info),
        tcb_info_issuer_chain=sim.pck_chain_pem().decode(),
    )
    out.append(
        Variant(
            "TCB info signed by the PCK leaf",
            genuine,
            leaf_signed,
            "collateral_signer_untrusted",
            fresh,
        )
    )
    return out


def _intel_variant(vectors: Path) -> Variant | None:
    cases_path = vectors / "cases.json"
    if not cases_path.is_file():
        return None
    cases = json.loads(cases_path.read_text())["cases"]
    entry = next(c for c in cases if c["id"] == "gotdxguest-cos113@20250604")
    return Variant(
        "genuine Intel quote (corpus)",
        (vectors / entry["quote"]).read_bytes(),
        load_collateral(vectors / entry["collateral"]),
        None,
        lambda: QuoteVerifier(trust_root=intel_root()),
        at=entry["at"],
    )


def _time_once(variant: Variant) -> float:
    verifier = variant.verifier()
    started = time.perf_counter()
    result = verifier.verify(variant.quote, variant.collateral, at=variant.at)
    elapsed = time.perf_counter() - started
    code = result.error.code if result.error else None
    if code != variant.expect:
        raise SystemExit(f"{variant.name}: expected {variant.expect}, got {code}")
    return elapsed


def _path_building_reference(sim: SimulatedDcap, total: int) -> float:
    """What cryptography's path builder, as cllm used it before (Web PKI profile, Intel leaves
    without SAN/EKU), spends on a ``total``-certificate PCK bomb (one run)."""
    chain = x509.load_pem_x509_certificates(hc.pck_bomb(sim, total))
    ee_policy = (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
    )
    verifier = (
        PolicyBuilder()
        .store(Store([sim.root_certificate]))
        .time(AT)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )
    started = time.perf_counter()
    with contextlib.suppress(VerificationError):
        verifier.verify(chain[0], chain[1:])
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    parser.add_argument("--vectors", type=Path, default=DEFAULT_VECTORS)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--path-building", action="store_true")
    args = parser.parse_args(argv)

    sim = SimulatedDcap.from_seed(
        b"bench chains",
        not_before=datetime(2025, 1, 1, tzinfo=UTC),
        not_after=datetime(2027, 1, 1, tzinfo=UTC),
    )
    variants = _variants(sim)
    intel = _intel_variant(args.vectors)
    if intel is not None:
        variants.insert(1, intel)
    samples: dict[str, list[float]] = {v.name: [] for v in variants}
    for variant in variants:  # warm-up: imports, module-level caches (parsed CRLs)
        _time_once(variant)
    gc.disable()
    try:
        for _ in range(args.repeat):
            for variant in variants:
                samples[variant.name].append(_time_once(variant))
    finally:
        gc.enable()
    genuine = statistics.median(samples["genuine simulated quote"])
    rows = [
        {
            "variant": v.name,
            "expect": v.expect or "ok",
            "median_ms": statistics.median(samples[v.name]) * 1000,
            "ratio": statistics.median(samples[v.name]) / genuine,
        }
        for v in variants
    ]
    hostile = [row for row in rows if row["expect"] != "ok"]
    worst = max(hostile, key=lambda row: row["ratio"])
    reference = (
        {str(n): _path_building_reference(sim, n) for n in (3, 4)} if args.path_building else None
    )
    doc: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "repeat": args.repeat,
        "rows": rows,
        "worst": worst,
        "goal_ratio": GOAL,
        "met": worst["ratio"] <= GOAL,
        "path_building_s": reference,
    }
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        console = Console()
        table = Table(title=f"Fresh verifier, median of {args.repeat} interleaved runs")
        for column in ("variant", "verdict", "median ms", "x genuine"):
            table.add_column(column, justify="left" if column == "variant" else "right")
        for row in rows:
            table.add_row(
                row["variant"], row["expect"], f"{row['median_ms']:.3f}", f"{row['ratio']:.2f}"
            )
        console.print(table)
        console.print(
            f"worst hostile chain: {worst['variant']}, {worst['ratio']:.2f} x genuine "
            f"(goal <= {GOAL:g}): {'met' if doc['met'] else 'NOT met'}"
        )
        for total, seconds in (reference or {}).items():
            console.print(f"path building (before), {total}-certificate PCK bomb: {seconds:.2f} s")
        console.print(f"load average {doc['load_average']}, {doc['cpus']} CPUs")
    return 0 if doc["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
