"""Component measurement: files, directories, installed distributions, Ollama models, config.

Every function returns one ``Event`` for RTMR3 (docs/design.md §4). ``measure_startup``
produces the fixed-order list ``cllm serve`` extends at start and ``cllm measure`` prints.

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

import base64
import binascii
import csv
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

import rfc8785
from rich.console import Console

from cllm.errors import EventLogError, MeasurementError
from cllm.measure._event import EVENT_TYPE_PREFIX, Event, freeze_json, thaw_json
from cllm.measure._hashing import (
    FileDigests,
    HashRequest,
    ProgressCallback,
    ProgressDisplay,
    hash_files,
)

__all__ = [
    "CLLM_DISTRIBUTION",
    "ENGINES",
    "LLAMA_CPP_DISTRIBUTION",
    "MEASURED_RTMR",
    "SECRET_MARKERS",
    "OllamaModel",
    "PathArg",
    "drop_secrets",
    "is_secret_name",
    "measure_config",
    "measure_directory",
    "measure_distribution",
    "measure_file",
    "measure_ollama_model",
    "measure_startup",
    "redact_argv",
]

_log = logging.getLogger(__name__)

PathArg = str | os.PathLike[str]

MEASURED_RTMR: Final = 3  # runtime measurements go to RTMR3; RTMR0-2 belong to firmware/boot
CLLM_DISTRIBUTION: Final = "confidential-llm"
LLAMA_CPP_DISTRIBUTION: Final = "llama-cpp-python"
ENGINES: Final = ("llama-cpp", "ollama", "openai")
SECRET_MARKERS: Final = ("key", "token", "secret", "password")
REDACTED: Final = "<redacted>"

_HEX = re.compile(r"[0-9a-f]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RECORD_HASHES: Final = ("sha256", "sha384")  # what RECORD may use that we compute anyway
_MAX_RECORD = 32 * 1024 * 1024
_MAX_MANIFEST = 1024 * 1024
_MAX_LAYERS = 1024


def _fail(message: str, code: str) -> NoReturn:
    raise MeasurementError(message, code=code)


# --- Plans: list the files first, hash everything in one pool, then build the events ---------


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


# --- Single file -------------------------------------------------------------------------------


def _plan_file(path: PathArg, *, name: str | None) -> _Plan:
    target = Path(path)
    shown = _absolute(path)

    def finish(results: Sequence[FileDigests]) -> Event:
        (result,) = results
        assert result.sha384 is not None
        details = {"path": shown, "size": result.size}
        return _event("file", name or target.name or shown, result.sha384, details)

    return _Plan((HashRequest(target),), finish, frozenset({os.path.realpath(target)}))


def measure_file(
    path: PathArg, *, name: str | None = None, progress: ProgressCallback | None = None
) -> Event:
    """``cllm.file``: the streamed SHA-384 of one regular file (default name: its basename)."""
    return _run([_plan_file(path, name=name)], workers=1, progress=progress)[0]


# --- Directory ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TreeEntry:
    relpath: str
    path: Path
    link_target: bytes | None  # None: a regular file


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def _walk(
    root: Path, *, allow_external_links: bool, skip_pycache: bool = False
) -> tuple[list[_TreeEntry], list[str]]:
    """Every file and symlink under ``root`` (not following links) and the external links."""
    if not root.exists():
        _fail(f"{root}: no such directory", "directory_missing")
    if not root.is_dir():
        _fail(f"{root} is not a directory", "not_a_directory")
    root_real = os.path.realpath(root)
    entries: list[_TreeEntry] = []
    external: list[str] = []
    stack: list[tuple[str, str]] = [("", root_real)]
    while stack:
        prefix, directory = stack.pop()
        try:
            with os.scandir(directory) as scan:
                children = list(scan)
        except OSError as exc:
            _fail(f"cannot list {directory}: {exc.strerror}", "directory_unreadable")
        for child in children:
            relpath = prefix + child.name
            _check_name(relpath, root)
            try:
                if child.is_symlink():
                    target = os.readlink(child.path)
                    if not _inside(os.path.realpath(child.path), root_real):
                        if not allow_external_links:
                            _fail(
                                f"{root}: symlink {relpath} -> {target} leaves the directory",
                                "symlink_escapes",
                            )
                        external.append(f"{relpath} -> {target}")
                    entries.append(_TreeEntry(relpath, Path(child.path), os.fsencode(target)))
                elif child.is_dir(follow_symlinks=False):
                    if not (skip_pycache and child.name == "__pycache__"):
                        stack.append((relpath + "/", child.path))
                elif child.is_file(follow_symlinks=False):
                    entries.append(_TreeEntry(relpath, Path(child.path), None))
                else:
                    _fail(f"{root}: {relpath} is not a file or directory", "unsupported_file_type")
            except OSError as exc:
                _fail(f"cannot read {child.path}: {exc.strerror}", "directory_unreadable")
    return entries, sorted(external)


def _tree_lines(
    entries: Sequence[_TreeEntry], results: Iterable[FileDigests]
) -> list[tuple[str, str]]:
    files = iter(results)
    lines: list[tuple[str, str]] = []
    for entry in entries:
        if entry.link_target is None:
            digest = next(files).sha384
            assert digest is not None
            lines.append((entry.relpath, digest.hex()))
        else:
            lines.append(
                (entry.relpath, "symlink:" + hashlib.sha384(entry.link_target).hexdigest())
            )
    return lines


def _file_requests(entries: Sequence[_TreeEntry]) -> tuple[HashRequest, ...]:
    return tuple(
        HashRequest(entry.path, follow_symlinks=False)
        for entry in entries
        if entry.link_target is None
    )


def _plan_directory(path: PathArg, *, name: str | None, allow_external_links: bool) -> _Plan:
    root = Path(path)
    shown = _absolute(path)
    entries, external = _walk(root, allow_external_links=allow_external_links)

    def finish(results: Sequence[FileDigests]) -> Event:
        digest, count = _manifest_digest(_tree_lines(entries, results), root)
        details: dict[str, object] = {"path": shown, "files": count}
        if external:
            details["external_links"] = external
        return _event("directory", name or root.name or shown, digest, details)

    covers = frozenset(os.path.realpath(e.path) for e in entries if e.link_target is None)
    return _Plan(_file_requests(entries), finish, covers)


def measure_directory(
    path: PathArg,
    *,
    name: str | None = None,
    allow_external_links: bool = False,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> Event:
    """``cllm.directory``: SHA-384 over the sorted manifest of every file under ``path``.

    See the module docstring for the exact manifest and the symlink rule.
    """
    plan = _plan_directory(path, name=name, allow_external_links=allow_external_links)
    return _run([plan], workers=workers, progress=progress)[0]


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


# --- Ollama model ------------------------------------------------------------------------------

_OLLAMA_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,79}")
_OLLAMA_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_OLLAMA_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class OllamaModel:
    """An Ollama model on disk: ``<root>/manifests/<registry>/<namespace>/<name>/<tag>``, its
    blobs at ``<root>/blobs/sha256-<hex>``. ``root`` is Ollama's models directory
    (``$OLLAMA_MODELS``, ``~/.ollama/models``, or ``/usr/share/ollama/.ollama/models``)."""

    root: Path
    name: str
    tag: str = "latest"
    namespace: str = "library"
    registry: str = "registry.ollama.ai"

    def __post_init__(self) -> None:
        # These become path components: anything but plain names could leave the models dir.
        for part in (self.name, self.namespace, self.registry):
            if not _OLLAMA_PART.fullmatch(part) or part.strip(".") == "":
                _fail(f"invalid Ollama model name part {part!r}", "ollama_name_invalid")
        if not _OLLAMA_TAG.fullmatch(self.tag) or self.tag.strip(".") == "":
            _fail(f"invalid Ollama tag {self.tag!r}", "ollama_name_invalid")

    @classmethod
    def parse(cls, reference: str, *, root: PathArg) -> OllamaModel:
        """``name``, ``name:tag``, ``namespace/name:tag`` or ``registry/namespace/name:tag``."""
        path, tag = reference, "latest"
        if ":" in reference.rsplit("/", 1)[-1]:
            path, tag = reference.rsplit(":", 1)
        parts = path.split("/")
        if len(parts) == 1:
            return cls(Path(root), parts[0], tag)
        if len(parts) == 2:
            return cls(Path(root), parts[1], tag, namespace=parts[0])
        if len(parts) == 3:
            return cls(Path(root), parts[2], tag, namespace=parts[1], registry=parts[0])
        _fail(f"invalid Ollama model reference {reference!r}", "ollama_name_invalid")

    @property
    def reference(self) -> str:
        """The model as Ollama names it, without the default registry and namespace."""
        if self.registry != "registry.ollama.ai":
            return f"{self.registry}/{self.namespace}/{self.name}"
        if self.namespace != "library":
            return f"{self.namespace}/{self.name}"
        return self.name

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifests" / self.registry / self.namespace / self.name / self.tag


def _read_small(path: Path, limit: int, code: str) -> bytes:
    try:
        with path.open("rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                _fail(f"{path} is not a regular file", code)
            data = handle.read(limit + 1)
    except FileNotFoundError as exc:
        raise MeasurementError(f"{path}: no such file", code=code) from exc
    except OSError as exc:
        raise MeasurementError(f"cannot read {path}: {exc.strerror}", code=code) from exc
    if len(data) > limit:
        _fail(f"{path} is larger than {limit} bytes", code)
    return data


@dataclass(frozen=True, slots=True)
class _Descriptor:
    media_type: str
    digest: str  # "sha256:<64 hex>"
    size: int

    def to_json(self) -> dict[str, str | int]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def _descriptor(value: object, where: str) -> _Descriptor:
    code = "ollama_manifest_invalid"
    if not isinstance(value, dict):
        _fail(f"{where} is not an object", code)
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type or _CONTROL.search(media_type):
        _fail(f"{where}.mediaType is not a string", code)
    if not isinstance(digest, str) or not _OLLAMA_DIGEST.fullmatch(digest):
        _fail(f"{where}.digest is not sha256:<64 lower-case hex>", code)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 2**53:
        _fail(f"{where}.size is not a byte count", code)
    return _Descriptor(media_type, digest, size)


def _plan_ollama(model: OllamaModel, *, name: str | None) -> _Plan:
    label = f"ollama model {model.reference}:{model.tag}"
    raw = _read_small(model.manifest_path, _MAX_MANIFEST, "ollama_manifest_missing")
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise MeasurementError(
            f"{label}: manifest is not JSON", code="ollama_manifest_invalid"
        ) from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        _fail(f"{label}: manifest has no layers list", "ollama_manifest_invalid")
    if len(manifest["layers"]) > _MAX_LAYERS:
        _fail(f"{label}: more than {_MAX_LAYERS} layers", "ollama_manifest_invalid")
    config = _descriptor(manifest.get("config"), "config")
    layers = [_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(manifest["layers"])]
    # Each distinct blob is hashed once, even if several layers name it.
    sizes: dict[str, int] = {}
    for descriptor in (config, *layers):
        if sizes.setdefault(descriptor.digest, descriptor.size) != descriptor.size:
            _fail(f"{label}: blob {descriptor.digest} has two sizes", "ollama_manifest_invalid")
    paths = {digest: model.root / "blobs" / digest.replace(":", "-") for digest in sizes}
    for digest, path in paths.items():
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            _fail(f"{label}: blob {digest} is missing", "ollama_blob_missing")
        except OSError as exc:
            _fail(f"{label}: cannot stat blob {digest}: {exc.strerror}", "ollama_blob_missing")
        if actual != sizes[digest]:  # cheap check first: no need to hash a truncated blob
            _fail(
                f"{label}: blob {digest} has {actual} bytes, manifest says {sizes[digest]}",
                "ollama_blob_size",
            )
    digests = list(paths)
    manifest_sha256 = "sha256:" + hashlib.sha256(raw).hexdigest()

    def finish(results: Sequence[FileDigests]) -> Event:
        for digest, result in zip(digests, results, strict=True):
            if result.size != sizes[digest]:
                _fail(f"{label}: blob {digest} changed size", "ollama_blob_size")
            assert result.sha256 is not None
            if "sha256:" + result.sha256.hex() != digest:
                _fail(f"{label}: blob {digest} does not match its digest", "ollama_blob_digest")
        summary: dict[str, Any] = {
            "manifest": manifest_sha256,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
        details = {
            "model": model.reference,
            "tag": model.tag,
            "manifest": manifest_sha256,
            "layers": len(layers),
        }
        value = hashlib.sha384(rfc8785.dumps(summary)).digest()
        return _event("ollama_model", name or f"{model.reference}:{model.tag}", value, details)

    requests = tuple(HashRequest(paths[d], sha384=False, sha256=True) for d in digests)
    return _Plan(requests, finish, frozenset(os.path.realpath(r.path) for r in requests))


def measure_ollama_model(
    model: OllamaModel,
    *,
    name: str | None = None,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> Event:
    """``cllm.ollama_model``: an Ollama manifest and every blob it names, each re-hashed.

    Errors: ``ollama_manifest_missing``, ``ollama_manifest_invalid``, ``ollama_blob_missing``,
    ``ollama_blob_size``, ``ollama_blob_digest``, ``ollama_name_invalid``.
    """
    return _run([_plan_ollama(model, name=name)], workers=workers, progress=progress)[0]


# --- Configuration -----------------------------------------------------------------------------


def is_secret_name(name: str) -> bool:
    """True when ``name`` contains ``key``, ``token``, ``secret`` or ``password`` (any case).

    Deliberately broad: a false positive (``max_tokens``) only leaves a setting unmeasured, a
    false negative would publish a secret in the event log.
    """
    lowered = name.lower()
    return any(marker in lowered for marker in SECRET_MARKERS)


def drop_secrets(settings: Mapping[str, object]) -> dict[str, object]:
    """A copy of ``settings`` without keys named like secrets (``is_secret_name``), at every
    level of nesting (objects inside objects and inside lists)."""

    def clean(value: object) -> object:
        if isinstance(value, Mapping):
            return {
                key: clean(item)
                for key, item in value.items()
                if not (isinstance(key, str) and is_secret_name(key))
            }
        if isinstance(value, list | tuple):
            return [clean(item) for item in value]
        return value

    cleaned = clean(settings)
    assert isinstance(cleaned, dict)
    return cleaned


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with the values of secret-named options replaced by ``<redacted>``.

    Handles ``--api-key=VALUE`` and ``--api-key VALUE`` (the next argument, unless it starts
    with ``-``). Secrets passed positionally or in short options cannot be recognised: pass
    secrets through the environment or files, which are not measured.
    """
    out: list[str] = []
    redact_next = False
    for arg in argv:
        if redact_next and not arg.startswith("-"):
            out.append(REDACTED)
            redact_next = False
            continue
        redact_next = False
        if arg.startswith("--"):
            option, equals, _ = arg.partition("=")
            if is_secret_name(option):
                if equals:
                    out.append(f"{option}={REDACTED}")
                    continue
                redact_next = True
        out.append(arg)
    return out


def measure_config(
    settings: Mapping[str, object], argv: Sequence[str], *, name: str = "config"
) -> Event:
    """``cllm.config``: the effective configuration and command line, in the clear.

    ``details = {"settings": settings, "argv": argv}`` and ``digest = SHA-384(JCS(details))``,
    so a verifier can recompute the digest from the log entry alone. Both are published in the
    event log: the caller passes only non-secret values (``drop_secrets``, ``redact_argv``;
    ``measure_startup`` applies both). Values must be event values (no floats, no ``None``):
    ``config_invalid`` otherwise.
    """
    if isinstance(argv, str) or not all(isinstance(arg, str) for arg in argv):
        _fail("argv must be a list of strings", "config_invalid")
    try:
        frozen = freeze_json({"settings": dict(settings), "argv": list(argv)}, depth=2)
    except EventLogError as exc:
        raise MeasurementError(f"configuration: {exc.message}", code="config_invalid") from exc
    digest = hashlib.sha384(rfc8785.dumps(thaw_json(frozen))).digest()
    assert isinstance(frozen, Mapping)
    return _event("config", name, digest, frozen)


# --- Start-up measurement ----------------------------------------------------------------------


def _covers_import(plan: _Plan, module: str) -> None:
    """The code Python will import for ``module`` must be among the files measured."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise MeasurementError(
            f"cannot locate module {module!r}", code="package_not_measured"
        ) from exc
    origin = spec.origin if spec is not None else None
    if origin is None or os.path.realpath(origin) not in plan.covers:
        _fail(
            f"module {module!r} is imported from {origin}, which was not measured",
            "package_not_measured",
        )


def _plan_path(path: PathArg, *, name: str, allow_external_links: bool) -> _Plan:
    if Path(path).is_dir():
        return _plan_directory(path, name=name, allow_external_links=allow_external_links)
    return _plan_file(path, name=name)


_ROLE_KINDS: Final = {
    "cllm": "package",
    "engine": "engine",
    "model": "model",
    "ui": "ui",
    "config": "config",
}


def _as_component(event: Event) -> Event:
    """Retype a measurement as the startup component it is (docs/design.md §4): ``type`` is
    ``cllm.<kind>`` of the component (package, engine, model, ui, config), which policies and
    tokens match on; ``name`` says which one; ``details.method`` says how it was measured."""
    kind = _ROLE_KINDS[event.name]
    method = event.type.removeprefix(EVENT_TYPE_PREFIX)
    details = dict(event.details)
    if "distribution" in details:
        name = str(details["distribution"])
    elif "model" in details and "tag" in details:
        name = f"{details['model']}:{details['tag']}"
    elif "path" in details and kind != "ui":
        name = Path(str(details["path"])).name or str(details["path"])
    else:
        name = event.name
    return _event(kind, name, event.digest, {"method": method, **details})


def _given_plan(event: Event) -> _Plan:
    """A component already measured from bytes kept in hand: nothing left to hash."""

    def finish(_: Sequence[FileDigests]) -> Event:
        return event

    return _Plan((), finish)


def measure_startup(
    *,
    model: PathArg | OllamaModel | None,
    settings: Mapping[str, object],
    argv: Sequence[str],
    engine: str = "llama-cpp",
    engine_paths: Sequence[PathArg] = (),
    ui_dir: PathArg | None = None,
    allow_external_links: bool = False,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    console: Console | None = None,
    show_progress: bool = True,
    prehashed: Mapping[str, Event] | None = None,
) -> tuple[Event, ...]:
    """The events ``cllm serve`` extends into RTMR3 before it listens, in this fixed order:

    Each event's ``type`` is ``cllm.<kind>`` of the component: ``package``, ``engine``,
    ``model``, ``ui``, ``config``; ``details.method`` says how it was measured (``file``,
    ``directory``, ``distribution``, ``ollama_model``, ``config``).

    1. ``cllm``: the distribution ``confidential-llm`` (``cllm.package``);
    2. ``engine``: for ``llama-cpp`` the distribution ``llama-cpp-python`` (missing:
       ``engine_not_installed``), then one event per ``engine_paths`` entry (``--measure``:
       file or directory). Upstream engines (``ollama``, ``openai``) need at least one path,
       else ``engine_unmeasured``: an unmeasured engine must not look measured;
    3. ``model``: a file (GGUF), a directory (e.g. safetensors), or an ``OllamaModel``; only
       the ``openai`` engine may pass ``None`` (its weights then among ``engine_paths``), else
       ``model_unmeasured``;
    4. ``ui``: the built UI assets directory, only when ``ui_dir`` is given and exists (the
       server must serve a UI only if this event is present);
    5. ``config``: ``drop_secrets(settings)`` and ``redact_argv(argv)``.

    For the two packages, the code Python imports (``cllm``, ``llama_cpp``) must be among the
    measured files (``package_not_measured``). Installer-compiled bytecode is not measured
    (see ``measure_distribution``): run the server with ``PYTHONPYCACHEPREFIX`` pointing at a
    fresh directory so ``__pycache__`` directories on disk are never read.

    ``prehashed`` gives the raw events of roles already measured from bytes kept in hand
    (``"model"``, ``"ui"``: see ``cllm.measure._snapshot``); they replace measuring the path.

    All files are hashed in one thread pool (``workers``). A progress bar appears on
    ``console`` (default stderr) if hashing takes over a second and ``show_progress`` is set
    and the console is a terminal; ``progress`` receives byte counts either way.
    """
    if engine not in ENGINES:
        _fail(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}", "engine_unknown")
    plans: list[_Plan] = []
    cllm_plan = _plan_distribution(CLLM_DISTRIBUTION, name="cllm")
    _covers_import(cllm_plan, "cllm")
    plans.append(cllm_plan)
    if engine == "llama-cpp":
        try:
            importlib.metadata.distribution(LLAMA_CPP_DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            _fail(
                f"engine llama-cpp needs the {LLAMA_CPP_DISTRIBUTION} distribution, which is "
                "not installed",
                "engine_not_installed",
            )
        engine_plan = _plan_distribution(LLAMA_CPP_DISTRIBUTION, name="engine")
        _covers_import(engine_plan, "llama_cpp")
        plans.append(engine_plan)
    elif not engine_paths:
        _fail(
            f"engine {engine} runs outside cllm: name its files with --measure PATH",
            "engine_unmeasured",
        )
    for path in engine_paths:
        plans.append(_plan_path(path, name="engine", allow_external_links=allow_external_links))
    given = dict(prehashed or {})
    for role, event in given.items():
        if role not in ("model", "ui") or event.name != role:
            raise ValueError(f"prehashed events are the raw 'model' and 'ui' ones, not {role!r}")
    if "model" in given:
        plans.append(_given_plan(given["model"]))
    elif model is None:
        if engine != "openai":
            _fail(f"engine {engine} needs its model measured", "model_unmeasured")
    elif isinstance(model, OllamaModel):
        plans.append(_plan_ollama(model, name="model"))
    else:
        plans.append(_plan_path(model, name="model", allow_external_links=allow_external_links))
    if "ui" in given:
        plans.append(_given_plan(given["ui"]))
    elif ui_dir is not None and Path(ui_dir).is_dir():
        plans.append(_plan_directory(ui_dir, name="ui", allow_external_links=False))
    elif ui_dir is not None:
        _log.info("no UI assets at %s: not measured, the UI must not be served", ui_dir)
    config = measure_config(drop_secrets(settings), redact_argv(argv))
    with ProgressDisplay(console=console, enabled=show_progress, callback=progress) as display:
        events = [_as_component(event) for event in _run(plans, workers=workers, progress=display)]
    events.append(_as_component(config))
    for event in events:
        _log.info("measured %s (%s): %s", event.name, event.type, event.digest.hex()[:16])
    return tuple(events)
