"""Benchmark: what fresh GPU evidence adds to an attestation (issue 17), simulated GPU.

In one process, interleaved, side by side with the same simulated TD and keys:

* **server, per batch** - one ``BatchEvidence`` call (the server's work for one quote: Merkle
  root, quote, bodies) for a batch of 1 and of 64 nonces, without GPU evidence (the baseline)
  and with the simulated GPU's collection (nonce derivation, one signed SPDM report, stapled
  OCSP answers, the field's digest into the binding). The simulated GPU signs its report with
  P-384 in software; a real H100 answers NVML's report call in tens of milliseconds instead
  (docs/gpu.md), so the server row is the *protocol's* overhead, not a hardware prediction.
* **verifier, per document** - ``LocalVerifier.appraise`` (every appraisal step, warm caches)
  of a document without and with GPU evidence.
* **body size** - bytes of one response body, without and with GPU evidence.

Usage: ``python bench/gpu_attest.py [--json] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cllm.client import LocalVerifier
from cllm.evidence import Binding
from cllm.gpu import SelectedGpuBackend, load_simulated_gpu
from cllm.measure import EventLog
from cllm.server import ServeSettings
from cllm.server._batch_evidence import BatchEvidence
from cllm.server._gpu import gpu_boot_gate
from cllm.server._gpu_evidence import gpu_collector
from cllm.tee import SimulatedTdBackend, load_simulated_world, rtmr3_extender


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def run(repeat: int) -> dict[str, Any]:
    logging.disable(logging.WARNING)  # the simulations say "simulated" on every use
    state = Path(tempfile.mkdtemp(prefix="cllm-bench-gpu-attest-"))
    td = SimulatedTdBackend(load_simulated_world(state, clock=time.time))
    gpu = load_simulated_gpu(state, clock=time.time)
    settings = ServeSettings(state_dir=state, tee="simulated")
    _, gate = gpu_boot_gate(settings, clock=time.time, selected=SelectedGpuBackend(gpu, "bench"))
    log = EventLog(rtmr3_extender(td))
    assert gate.event is not None
    log.append(gate.event)
    keys = Binding.with_throwaway_keys(bytes(32))
    common = {
        "tee": "simulated-tdx",
        "keys": keys,
        "events": log.events(),
        "collateral": td.world.collateral(),
    }
    plain = BatchEvidence(td, **common)  # type: ignore[arg-type]
    with_gpu = BatchEvidence(td, gpu=gpu_collector(gate, clock=time.time), **common)  # type: ignore[arg-type]
    results: dict[str, Any] = {}
    for size in (1, 64):
        nonces = [os.urandom(32) for _ in range(size)]
        base, gpu_ms = [], []
        for _ in range(3):  # interleaved rounds
            base.append(_median_ms(lambda n=nonces: plain(n), repeat))
            gpu_ms.append(_median_ms(lambda n=nonces: with_gpu(n), repeat))
        results[f"server_batch_{size}_ms"] = {"without": min(base), "with_gpu": min(gpu_ms)}
    nonce = os.urandom(32)
    doc_plain = json.loads(plain([nonce])[0])
    doc_gpu = json.loads(with_gpu([nonce])[0])
    results["body_bytes"] = {
        "without": len(plain([nonce])[0]),
        "with_gpu": len(with_gpu([nonce])[0]),
    }
    device, rim = gpu.root_pems()
    (state / "gpu-root.pem").write_bytes(device + rim)
    verifier = LocalVerifier(
        trust_simulated_root=state / "simulated" / "root-ca.pem",
        trust_simulated_gpu_root=state / "gpu-root.pem",
    )
    assert verifier.appraise(doc_gpu, nonce=nonce).status == "warning"
    base, gpu_ms = [], []
    for _ in range(3):
        base.append(_median_ms(lambda: verifier.appraise(doc_plain, nonce=nonce), repeat))
        gpu_ms.append(_median_ms(lambda: verifier.appraise(doc_gpu, nonce=nonce), repeat))
    results["verifier_ms"] = {"without": min(base), "with_gpu": min(gpu_ms)}
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "load_average": os.getloadavg(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "repeat": repeat,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    report = run(args.repeat)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{report['machine']}; load {report['load_average']}; {report['date']}")
    for name, row in report["results"].items():
        extra = row["with_gpu"] - row["without"]
        print(
            f"{name:24} without {row['without']:10.2f}  with GPU {row['with_gpu']:10.2f}  "
            f"(+{extra:.2f})"
        )


if __name__ == "__main__":
    main()
