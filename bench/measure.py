"""Benchmark: cllm's file measurement (streamed SHA-384) against ``openssl dgst -sha384``.

In one run on one machine, on the same files, with the page cache warm:

* **one large file** (2 GB of random data by default): ``cllm.measure.hash_file`` versus
  ``openssl dgst -sha384``, timed alternately, ``--repeat`` times each; best and median.
  Goal: cllm reaches at least 90 % of OpenSSL's throughput.
* **several files** (4 x 256 MB by default): ``hash_files`` on one thread versus on every CPU,
  and OpenSSL on the same files, one process after the other and all processes at once.

Files are created in a temporary directory (``--dir``, default the system's) and deleted
afterwards. With less than 6 GB free there, sizes are scaled down and the output says so.
If ``openssl`` is not installed, the script says so and exits 0.

Usage: ``python bench/measure.py [--json] [--size-mb N] [--files N] [--file-mb N]
[--repeat N] [--dir PATH]``. Throughput is in GB/s (10^9 bytes per second), wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cllm.measure import hash_file, hash_files
from cllm.measure._hashing import CHUNK_SIZE, HashRequest, default_workers

MB = 1_000_000
GB = 1_000_000_000
MIN_FREE = 6 * GB
WRITE_BLOCK = 16 * 1024 * 1024


def make_file(path: Path, size: int) -> None:
    """``size`` bytes of random data, written block by block (never held in memory whole)."""
    with path.open("wb") as handle:
        left = size
        while left:
            block = os.urandom(min(WRITE_BLOCK, left))
            handle.write(block)
            left -= len(block)


def warm(paths: Sequence[Path]) -> None:
    """Read every file once so both contenders start from the page cache."""
    buffer = bytearray(CHUNK_SIZE)
    for path in paths:
        with path.open("rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass


def openssl_sha384(paths: Sequence[Path]) -> list[str]:
    """``openssl dgst -sha384 -r`` on the files, one process; the hex digests in order."""
    out = subprocess.run(
        ["openssl", "dgst", "-sha384", "-r", *map(str, paths)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line.split()[0] for line in out.splitlines()]


def openssl_parallel(paths: Sequence[Path]) -> list[str]:
    """One ``openssl dgst`` process per file, all at once."""
    procs = [
        subprocess.Popen(
            ["openssl", "dgst", "-sha384", "-r", str(path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for path in paths
    ]
    digests = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError("openssl failed")
        digests.append(out.split()[0])
    return digests


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def rates(seconds: Sequence[float], size: int) -> dict[str, float]:
    return {
        "best": size / min(seconds) / GB,
        "median": size / statistics.median(seconds) / GB,
    }


def alternate(
    contenders: dict[str, Callable[[], object]], repeat: int
) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Run every contender once untimed, then ``repeat`` rounds in turn, timing each."""
    results = {name: fn() for name, fn in contenders.items()}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            seconds, result = timed(fn)
            if result != results[name]:
                raise RuntimeError(f"{name} gave a different result on a repeat run")
            times[name].append(seconds)
    return times, results


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def plan_sizes(free: int, size: int, files: int, file_size: int) -> tuple[int, int, str | None]:
    """Scale the workload down when the disk is short; the note says what happened."""
    if free >= MIN_FREE:
        return size, file_size, None
    # Both workloads exist at once; keep them within a third of what is free.
    scale = (free / 3) / (size + files * file_size)
    if scale >= 1:
        return size, file_size, None
    new_size, new_file = int(size * scale), int(file_size * scale)
    note = (
        f"only {free / GB:.1f} GB free in the temp dir (< {MIN_FREE / GB:.0f} GB): scaled down to "
        f"{new_size / MB:.0f} MB and {files} x {new_file / MB:.0f} MB"
    )
    return new_size, new_file, note


def run(args: argparse.Namespace) -> dict[str, Any]:
    openssl = shutil.which("openssl")
    if openssl is None:
        return {"cllm_gb_s": None, "openssl_gb_s": None, "ratio": None, "error": "no openssl"}
    version = subprocess.run(
        [openssl, "version"], check=True, capture_output=True, text=True
    ).stdout.strip()
    base = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    free = shutil.disk_usage(base).free
    size, file_size, note = plan_sizes(free, args.size_mb * MB, args.files, args.file_mb * MB)
    workers = default_workers()
    with tempfile.TemporaryDirectory(prefix="cllm-bench-", dir=base) as tmp:
        big = Path(tmp) / "big.bin"
        make_file(big, size)
        small = [Path(tmp) / f"part{i}.bin" for i in range(args.files)]
        for path in small:
            make_file(path, file_size)
        warm([big, *small])

        def cllm_one() -> str:
            digest = hash_file(big).sha384
            assert digest is not None
            return digest.hex()

        single, single_results = alternate(
            {"cllm": cllm_one, "openssl": lambda: openssl_sha384([big])[0]}, args.repeat
        )
        if single_results["cllm"] != single_results["openssl"]:
            raise RuntimeError("cllm and openssl disagree on the digest")

        requests = [HashRequest(path) for path in small]

        def cllm_many(threads: int) -> Callable[[], list[str]]:
            def go() -> list[str]:
                return [r.sha384.hex() for r in hash_files(requests, workers=threads) if r.sha384]

            return go

        many, many_results = alternate(
            {
                "cllm_sequential": cllm_many(1),
                "cllm_parallel": cllm_many(workers),
                "openssl_sequential": lambda: openssl_sha384(small),
                "openssl_parallel": lambda: openssl_parallel(small),
            },
            args.repeat,
        )
        if len({json.dumps(result) for result in many_results.values()}) != 1:
            raise RuntimeError("multi-file digests disagree")

    cllm = rates(single["cllm"], size)
    ssl_rate = rates(single["openssl"], size)
    total = file_size * args.files
    many_rates = {name: rates(times, total) for name, times in many.items()}
    return {
        "cllm_gb_s": round(cllm["best"], 3),
        "openssl_gb_s": round(ssl_rate["best"], 3),
        "ratio": round(cllm["best"] / ssl_rate["best"], 3),
        "ratio_median": round(cllm["median"] / ssl_rate["median"], 3),
        "cllm_median_gb_s": round(cllm["median"], 3),
        "openssl_median_gb_s": round(ssl_rate["median"], 3),
        "file_bytes": size,
        "repeat": args.repeat,
        "files": args.files,
        "file_bytes_each": file_size,
        "workers": workers,
        **{f"{name}_gb_s": round(r["best"], 3) for name, r in many_rates.items()},
        "parallel_speedup": round(
            many_rates["cllm_parallel"]["best"] / many_rates["cllm_sequential"]["best"], 3
        ),
        "chunk_bytes": CHUNK_SIZE,
        "note": note,
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "openssl": version,
        "python_openssl": ssl.OPENSSL_VERSION,
        "hashlib_sha384": getattr(hashlib.sha384, "__name__", "?"),
        "seconds": {
            name: [round(t, 4) for t in times] for name, times in {**single, **many}.items()
        },
    }


def print_table(result: dict[str, Any]) -> None:
    console = Console()
    if result.get("error"):
        console.print("openssl is not installed: nothing to compare against; skipping.")
        return
    if result["note"]:
        console.print(f"[yellow]note: {result['note']}[/yellow]")
    table = Table(title=f"one file, {result['file_bytes'] / GB:.2f} GB, best of {result['repeat']}")
    for column in ("", "best GB/s", "median GB/s"):
        table.add_column(column, justify="right")
    table.add_row(
        "cllm hash_file", f"{result['cllm_gb_s']:.3f}", f"{result['cllm_median_gb_s']:.3f}"
    )
    table.add_row(
        "openssl dgst -sha384",
        f"{result['openssl_gb_s']:.3f}",
        f"{result['openssl_median_gb_s']:.3f}",
    )
    console.print(table)
    console.print(
        f"ratio cllm / openssl: best {result['ratio']:.3f}, median {result['ratio_median']:.3f}"
    )
    each = result["file_bytes_each"] / MB
    many = Table(title=f"{result['files']} files x {each:.0f} MB, best of {result['repeat']}")
    many.add_column("")
    many.add_column("GB/s", justify="right")
    for name in ("cllm_sequential", "cllm_parallel", "openssl_sequential", "openssl_parallel"):
        many.add_row(name.replace("_", " "), f"{result[f'{name}_gb_s']:.3f}")
    console.print(many)
    console.print(
        f"parallel speedup ({result['workers']} workers): {result['parallel_speedup']:.2f}x; "
        f"{result['cpu']}, {result['cpus']} CPUs, Python {result['python']}, {result['openssl']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--size-mb", type=int, default=2000, help="large file size (MB)")
    parser.add_argument("--files", type=int, default=4, help="files in the parallel case")
    parser.add_argument("--file-mb", type=int, default=256, help="size of each of them (MB)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per contender")
    parser.add_argument("--dir", help="where to create the temporary files")
    args = parser.parse_args(argv)
    result = run(args)
    if result.get("error") and args.json:  # keep stdout pure JSON; tell the human on stderr
        print("openssl is not installed; nothing to compare against, skipping", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
