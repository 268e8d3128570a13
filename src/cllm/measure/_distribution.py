"""Component measurement of an installed Python distribution (``cllm.distribution``), each file
checked against its RECORD."""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cllm.errors import MeasurementError
from cllm.measure._event import Event
from cllm.measure._files import (
    _file_requests,
    _tree_lines,
    _TreeEntry,
    _walk,
)
from cllm.measure._hashing import (
    FileDigests,
    HashRequest,
    ProgressCallback,
)
from cllm.measure._plan import (
    _check_name,
    _event,
    _fail,
    _manifest_digest,
    _Plan,
    _run,
)

__all__ = ["measure_distribution"]

_RECORD_HASHES: Final = ("sha256", "sha384")  # what RECORD may use that we compute anyway
_MAX_RECORD = 32 * 1024 * 1024


# --- Installed Python distribution (RECORD) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RecordEntry:
    path: str  # as RECORD writes it; the manifest path
    file: Path
    algorithm: str | None
    expected: bytes | None
    size: int | None


def _load_distribution(
    distribution: str | importlib.metadata.Distribution,
) -> importlib.metadata.Distribution:
    if isinstance(distribution, importlib.metadata.Distribution):
        return distribution
    try:
        return importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise MeasurementError(
            f"distribution {distribution!r} is not installed", code="distribution_not_found"
        ) from exc


def _is_unhashed_bytecode(path: str) -> bool:
    parts = path.split("/")
    return path.endswith(".pyc") and len(parts) >= 2 and parts[-2] == "__pycache__"


def _record_entries(dist: importlib.metadata.Distribution, label: str) -> list[_RecordEntry]:
    text = dist.read_text("RECORD")
    if text is None:
        _fail(f"{label}: no RECORD (not installed by a PEP 376 installer)", "record_missing")
    if len(text) > _MAX_RECORD:
        _fail(f"{label}: RECORD is larger than {_MAX_RECORD} bytes", "record_malformed")
    base = dist.locate_file("")
    if not isinstance(base, Path):
        _fail(f"{label}: not installed as files on disk", "distribution_unsupported")
    entries: list[_RecordEntry] = []
    try:
        rows = list(csv.reader(io.StringIO(text)))  # quoted fields may hold newlines
    except csv.Error as exc:
        raise MeasurementError(
            f"{label}: RECORD is not CSV: {exc}", code="record_malformed"
        ) from exc
    for number, row in enumerate(rows, start=1):
        if not row:
            continue
        if len(row) != 3:
            _fail(f"{label}: RECORD line {number} has {len(row)} fields", "record_malformed")
        path, hash_field, size_field = row
        _check_name(path, f"{label} RECORD line {number}")
        if not hash_field:
            parts = path.split("/")
            # PEP 376: RECORD cannot hash itself. Installers list the .pyc files they compile
            # without a hash; their bytes embed source timestamps, so they differ between
            # installs and would make reference values irreproducible: they are skipped.
            # Any other unhashed file is measured, just not checked.
            if parts[-1] == "RECORD" and len(parts) == 2 and parts[0].endswith(".dist-info"):
                continue
            if _is_unhashed_bytecode(path):
                continue
            entries.append(_RecordEntry(path, base / path, None, None, _size_field(size_field)))
            continue
        algorithm, _, encoded = hash_field.partition("=")
        if algorithm not in _RECORD_HASHES:
            _fail(f"{label}: {path} uses hash {algorithm!r}", "record_hash_unsupported")
        try:
            expected = base64.b64decode(
                encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True
            )
        except (binascii.Error, ValueError) as exc:
            raise MeasurementError(
                f"{label}: RECORD hash of {path} is not base64", code="record_malformed"
            ) from exc
        if len(expected) != hashlib.new(algorithm).digest_size:
            _fail(f"{label}: RECORD hash of {path} has the wrong length", "record_malformed")
        entries.append(
            _RecordEntry(path, base / path, algorithm, expected, _size_field(size_field))
        )
    return entries


def _size_field(value: str) -> int | None:
    if not value:
        return None
    if not value.isdigit():
        _fail(f"RECORD size {value!r} is not a number", "record_malformed")
    return int(value)


def _is_editable(dist: importlib.metadata.Distribution) -> bool:
    text = dist.read_text("direct_url.json")
    if not text:
        return False
    try:
        info = json.loads(text)
    except ValueError:
        return False
    dir_info = info.get("dir_info") if isinstance(info, dict) else None
    return isinstance(dir_info, dict) and dir_info.get("editable") is True


def _editable_roots(entries: Sequence[_RecordEntry], label: str) -> list[Path]:
    """Source directories an editable install's ``.pth`` files put on ``sys.path``.

    Only plain directory lines are understood (hatchling, setuptools' ``compat`` mode);
    ``.pth`` lines that run code (import hooks) could load anything, so they are refused.
    """
    roots: list[Path] = []
    for entry in entries:
        if not entry.path.endswith(".pth") or "/" in entry.path:
            continue
        try:
            lines = entry.file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise MeasurementError(
                f"{label}: cannot read {entry.path}", code="editable_unsupported"
            ) from exc
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith(("import ", "import\t")):
                _fail(
                    f"{label}: editable install via import hook ({entry.path}) cannot be measured",
                    "editable_unsupported",
                )
            root = entry.file.parent / line  # site.py: relative to the site directory
            if not root.is_dir():
                _fail(f"{label}: {entry.path} names a missing directory", "editable_unsupported")
            roots.append(root)
    return roots


def _plan_distribution(
    distribution: str | importlib.metadata.Distribution, *, name: str | None
) -> _Plan:
    dist = _load_distribution(distribution)
    dist_name = dist.metadata["Name"] or str(distribution)
    version = dist.version
    label = f"{dist_name} {version}"
    entries = _record_entries(dist, label)
    editable = _is_editable(dist)
    tree: list[_TreeEntry] = []
    if editable:
        # An editable RECORD lists only a .pth file pointing at the source tree, so the tree
        # itself is measured as well (its paths relative to the directory the .pth names).
        for root in _editable_roots(entries, label):
            found, _ = _walk(root, allow_external_links=False, skip_pycache=True)
            tree.extend(found)
    requests = tuple(
        HashRequest(entry.file, sha256=entry.algorithm == "sha256") for entry in entries
    ) + _file_requests(tree)

    def finish(results: Sequence[FileDigests]) -> Event:
        lines: list[tuple[str, str]] = []
        for entry, result in zip(entries, results[: len(entries)], strict=True):
            _check_record(entry, result, label)
            assert result.sha384 is not None
            lines.append((entry.path, result.sha384.hex()))
        lines.extend(_tree_lines(tree, results[len(entries) :]))
        digest, count = _manifest_digest(lines, label)
        details = {
            "distribution": dist_name,
            "version": version,
            "files": count,
            "editable": editable,
        }
        return _event("distribution", name or dist_name, digest, details)

    covers = frozenset(os.path.realpath(request.path) for request in requests)
    return _Plan(requests, finish, covers)


def _check_record(entry: _RecordEntry, result: FileDigests, label: str) -> None:
    if entry.size is not None and entry.size != result.size:
        _fail(
            f"{label}: {entry.path} has {result.size} bytes, RECORD says {entry.size}",
            "record_size_mismatch",
        )
    if entry.algorithm is None:
        return
    actual = result.sha256 if entry.algorithm == "sha256" else result.sha384
    if actual != entry.expected:
        _fail(f"{label}: {entry.path} does not match its RECORD hash", "record_hash_mismatch")


def measure_distribution(
    distribution: str | importlib.metadata.Distribution,
    *,
    name: str | None = None,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> Event:
    """``cllm.distribution``: every file of an installed distribution, checked against RECORD.

    Each file RECORD lists is re-hashed; a listed SHA-256 (or SHA-384) and size must match the
    file on disk (``record_hash_mismatch``, ``record_size_mismatch``; other algorithms:
    ``record_hash_unsupported``). Skipped: RECORD itself, and ``__pycache__/*.pyc`` files that
    RECORD lists *without* a hash (installer-compiled bytecode; see ``measure_startup`` for how
    the server keeps such files from being loaded). Unhashed files of any other kind are
    measured but cannot be checked. Files RECORD does not list are not measured.

    Editable installs (``direct_url.json`` says so) also measure the source directories their
    ``.pth`` file names, excluding ``__pycache__``; details say ``"editable": true``.

    The digest depends on installer-written files (``INSTALLER``, script wrappers whose
    shebang names the environment's interpreter), so reference values come from the same
    installed environment (for example, the same image), not from the wheel alone.
    """
    plan = _plan_distribution(distribution, name=name)
    return _run([plan], workers=workers, progress=progress)[0]
