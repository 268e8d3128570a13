"""Component measurement, the part every kind shares: plans (list the files first, hash
everything in one pool, then build the events), the event and the manifest.

The kinds live beside it: ``_files`` (files, directories), ``_distribution`` (installed
distributions), ``_ollama`` (Ollama models), ``_config`` (configuration), and ``_startup``
(``measure_startup``, the fixed-order list ``cllm serve`` extends at start and ``cllm
measure`` prints). Every measurement is one ``Event`` for RTMR3 (docs/design.md §4).

Event types and what their digest is (all SHA-384, hex in the event):

* ``cllm.file``: the file's content. Details ``{"path": absolute path, "size": bytes}``.
* ``cllm.directory``: the directory's *manifest* (below). Details ``{"path", "files"}``, plus
  ``"external_links"`` when links leaving the directory were allowed and found.
* ``cllm.distribution``: the manifest of the files an installed Python distribution's RECORD
  lists, each checked against RECORD. Details ``{"distribution", "version", "files",
  "editable"}``.
* ``cllm.ollama_model``: ``JCS({"manifest": "sha256:<hex of the manifest file>", "config":
  descriptor, "layers": [descriptor, ...]})`` with each descriptor exactly ``{"mediaType",
  "digest", "size"}``, every blob re-hashed and checked. Details ``{"model", "tag",
  "manifest", "layers"}``.
* ``cllm.config``: ``JCS(details)`` where details are ``{"settings": {...}, "argv": [...]}``.

Manifest (directories and distributions), exactly: one line per entry,
``<path> <value>\\n``, where ``<path>`` is the entry's relative POSIX path (UTF-8, ``/``
separators, no ``.``/``..`` components for directories; as RECORD writes it for
distributions) and ``<value>`` is the file's SHA-384 as 96 lower-case hex digits, or, for a
symbolic link (directories only), ``symlink:`` followed by the SHA-384 hex of the link's target
string. Lines are sorted by the UTF-8 bytes of ``<path>``; the digest is SHA-384 of their
concatenation. Because the value is fixed-length and last, and paths may not contain control
characters (so no newline), the manifest is unambiguous. Empty directories, permissions and
timestamps are not measured: only names and contents are.

Symbolic links inside a measured directory are never followed: each is recorded as a link (its
target string), and whatever it points to is measured under its own path. A link that resolves
outside the directory would make the digest miss content that is read through it, so it is
rejected (``symlink_escapes``) unless ``allow_external_links=True``, which records it and lists
it in the event's details, so a verifier can see exactly what was left out. Devices, FIFOs and
sockets are rejected (``unsupported_file_type``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn

from cllm.errors import EventLogError, MeasurementError
from cllm.measure._event import Event, freeze_json
from cllm.measure._hashing import (
    FileDigests,
    HashRequest,
    ProgressCallback,
    ProgressDisplay,
    hash_files,
)

__all__ = ["MEASURED_RTMR", "PathArg"]

_log = logging.getLogger(__name__)

PathArg = str | os.PathLike[str]

MEASURED_RTMR: Final = 3  # runtime measurements go to RTMR3; RTMR0-2 belong to firmware/boot

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _fail(message: str, code: str) -> NoReturn:
    raise MeasurementError(message, code=code)


@dataclass(frozen=True, slots=True)
class _Plan:
    """One component: the files to hash and how to turn their digests into an event."""

    requests: tuple[HashRequest, ...]
    finish: Callable[[Sequence[FileDigests]], Event]
    covers: frozenset[str] = frozenset()  # real paths of the files measured (import checks)


def _run(
    plans: Sequence[_Plan], *, workers: int | None, progress: ProgressCallback | None
) -> list[Event]:
    requests = [request for plan in plans for request in plan.requests]
    if isinstance(progress, ProgressDisplay):
        progress.add_total(sum(_size(request.path) for request in requests))
    started = time.monotonic()
    results = hash_files(requests, workers=workers, progress=progress)
    events: list[Event] = []
    offset = 0
    for plan in plans:
        count = len(plan.requests)
        events.append(plan.finish(results[offset : offset + count]))
        offset += count
    _log.info(
        "measured %d components (%d files) in %.2fs",
        len(plans),
        len(requests),
        time.monotonic() - started,
    )
    return events


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _event(kind: str, name: str, digest: bytes, details: Mapping[str, object]) -> Event:
    try:
        frozen = freeze_json(details, depth=2)
        assert isinstance(frozen, Mapping)  # a mapping freezes to a mapping
        return Event(
            rtmr=MEASURED_RTMR, type=f"cllm.{kind}", name=name, digest=digest, details=frozen
        )
    except EventLogError as exc:  # e.g. a name or path that is not valid Unicode
        raise MeasurementError(f"cannot record {name!r}: {exc.message}", code=exc.code) from exc


def _check_name(path: str, where: object) -> None:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        _fail(f"{where}: path {path!r} is not valid UTF-8", "unsafe_path")
    if not path or _CONTROL.search(path):
        _fail(f"{where}: path {path!r} is empty or has control characters", "unsafe_path")


def _manifest_digest(entries: Iterable[tuple[str, str]], where: object) -> tuple[bytes, int]:
    """SHA-384 of the sorted manifest of ``(path, value)`` entries, and the entry count."""
    encoded = sorted((path.encode("utf-8"), value) for path, value in entries)
    manifest = hashlib.sha384()
    previous: bytes | None = None
    for path, value in encoded:
        if path == previous:
            _fail(f"{where}: {path.decode()!r} is listed twice", "duplicate_path")
        previous = path
        manifest.update(path + b" " + value.encode("ascii") + b"\n")
    return manifest.digest(), len(encoded)


def _absolute(path: PathArg) -> str:
    # Absolute but not resolved: the path the operator configured is what the log shows.
    return os.path.abspath(os.fspath(path))
