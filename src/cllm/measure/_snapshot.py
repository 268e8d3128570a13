"""Measurements whose bytes stay in hand, so that what runs is exactly what was hashed.

``measure_directory`` and ``measure_file`` hash files that are read again later, by path: a
file swapped in between would run unmeasured. These read each byte once and keep it:

* ``snapshot_directory``: every file of a directory into memory (the UI, which the server then
  serves from these bytes), with the same ``cllm.directory`` event ``measure_directory`` gives.
* ``snapshot_file_to_memfd``: one file copied into a sealed anonymous file (``memfd``), hashed
  on the way, with the same ``cllm.file`` event ``measure_file`` gives. The model is loaded
  from ``/proc/self/fd/<fd>``: the sealed copy cannot change, whatever happens to the path.

Both events are byte-identical to the path-based ones, so ``cllm measure`` reference values
match either way.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cllm.errors import MeasurementError
from cllm.measure._event import Event
from cllm.measure._files import _walk
from cllm.measure._hashing import CHUNK_SIZE
from cllm.measure._plan import PathArg, _absolute, _event, _manifest_digest

__all__ = ["DirectorySnapshot", "MemfdFile", "snapshot_directory", "snapshot_file_to_memfd"]

_MAX_SNAPSHOT_BYTES: Final = 256 * 1024 * 1024  # a UI is a few hundred KiB


@dataclass(frozen=True, slots=True)
class DirectorySnapshot:
    files: Mapping[str, bytes]  # relative POSIX path -> the exact bytes that were hashed
    event: Event  # cllm.directory, as measure_directory computes it


def _read_regular(path: Path, limit: int) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise MeasurementError(
            f"cannot read {path}: {exc.strerror}", code="directory_unreadable"
        ) from exc
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise MeasurementError(f"{path} is not a regular file", code="unsupported_file_type")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise MeasurementError(f"{path} is too large to keep in memory", code="snapshot_too_large")
    return data


def snapshot_directory(path: PathArg, *, name: str | None = None) -> DirectorySnapshot:
    """Every file under ``path`` read once into memory, and its ``cllm.directory`` event.
    Symbolic links are refused (``symlink_in_snapshot``): served bytes come from files only."""
    root = Path(path)
    entries, _ = _walk(root, allow_external_links=False)
    files: dict[str, bytes] = {}
    lines: list[tuple[str, str]] = []
    total = 0
    for entry in entries:
        if entry.link_target is not None:
            raise MeasurementError(
                f"{root}: {entry.relpath} is a symbolic link; a snapshot holds files only",
                code="symlink_in_snapshot",
            )
        data = _read_regular(entry.path, _MAX_SNAPSHOT_BYTES - total)
        total += len(data)
        files[entry.relpath] = data
        lines.append((entry.relpath, hashlib.sha384(data).hexdigest()))
    digest, count = _manifest_digest(lines, root)
    shown = _absolute(path)
    event = _event("directory", name or root.name or shown, digest, {"path": shown, "files": count})
    return DirectorySnapshot(files=files, event=event)


@dataclass(frozen=True, slots=True)
class MemfdFile:
    fd: int  # sealed against any change; open for the life of the process
    size: int
    event: Event  # cllm.file, as measure_file computes it

    @property
    def path(self) -> Path:
        """A path that opens this very copy (for libraries that take a path)."""
        return Path(f"/proc/self/fd/{self.fd}")


def snapshot_file_to_memfd(path: PathArg, *, name: str | None = None) -> MemfdFile:
    """Copy ``path`` into a sealed memfd, hashing the bytes copied, in one pass."""
    source = Path(path)
    if not hasattr(os, "memfd_create"):
        raise MeasurementError("memfd_create is not available here", code="memfd_unavailable")
    try:
        src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise MeasurementError(f"{source}: no such file", code="file_missing") from exc
    except OSError as exc:
        raise MeasurementError(
            f"cannot read {source}: {exc.strerror}", code="file_unreadable"
        ) from exc
    memfd = -1
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            raise MeasurementError(f"{source} is not a regular file", code="unsupported_file_type")
        memfd = os.memfd_create("cllm-measured", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        digest = hashlib.sha384()
        size = 0
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        while True:
            count = os.readv(src, [buffer])
            if count == 0:
                break
            chunk = view[:count]
            digest.update(chunk)
            written = 0
            while written < count:
                written += os.write(memfd, chunk[written:])
            size += count
        seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
        fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, seals)
        os.lseek(memfd, 0, os.SEEK_SET)
    except OSError as exc:
        if memfd >= 0:
            os.close(memfd)
        raise MeasurementError(
            f"cannot copy {source}: {exc.strerror}", code="file_unreadable"
        ) from exc
    except BaseException:
        if memfd >= 0:
            os.close(memfd)
        raise
    finally:
        os.close(src)
    event = _event(
        "file",
        name or source.name or _absolute(path),
        digest.digest(),
        {"path": _absolute(path), "size": size},
    )
    return MemfdFile(fd=memfd, size=size, event=event)
