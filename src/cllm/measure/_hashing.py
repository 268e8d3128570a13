"""Streamed, parallel file hashing, and a progress bar that appears only for slow work.

Speed matters here: ``cllm serve`` measures multi-GB model files before it accepts a request.
Files are read with ``readinto`` into a reusable per-thread buffer (``CHUNK_SIZE``), never
whole, and each chunk goes to ``hashlib`` (OpenSSL), which releases the GIL for large updates;
so one file hashes at OpenSSL's own speed and several files hash in parallel on several cores.
Results never depend on completion order: ``hash_files`` returns them in request order.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from cllm.errors import MeasurementError

__all__ = [
    "CHUNK_SIZE",
    "FileDigests",
    "HashRequest",
    "ProgressCallback",
    "ProgressDisplay",
    "default_workers",
    "hash_file",
    "hash_files",
]

_log = logging.getLogger(__name__)

# 1 MiB: large enough that per-call overhead vanishes (hashlib drops the GIL per update, the
# kernel reads ahead), small enough to stay in L2 cache between the read's copy and the hash.
# On the benchmark machine 256 KiB-16 MiB were within noise of each other, 1 MiB marginally best.
CHUNK_SIZE: Final = 1024 * 1024

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes just hashed; may be called from several threads at once."""


@dataclass(frozen=True, slots=True)
class HashRequest:
    """One file to hash, with the digests wanted (SHA-384 by default, SHA-256 on request)."""

    path: Path
    sha384: bool = True
    sha256: bool = False
    # False for entries found by walking a directory: a file swapped for a symlink between the
    # walk and the open must not pull in content from elsewhere.
    follow_symlinks: bool = True


@dataclass(frozen=True, slots=True)
class FileDigests:
    path: Path
    size: int
    sha384: bytes | None
    sha256: bytes | None


class _AbortedError(Exception):
    """Another file of the same batch failed: stop reading this one."""


_buffers = threading.local()


def _buffer(chunk_size: int) -> memoryview:
    # One buffer per thread, reused across files: allocating (and zero-filling) a fresh
    # multi-MiB buffer per file would dominate when measuring thousands of small files.
    view: memoryview | None = getattr(_buffers, "view", None)
    if view is None or len(view) != chunk_size:
        view = memoryview(bytearray(chunk_size))
        _buffers.view = view
    return view


def _open_regular(path: Path, *, follow_symlinks: bool = True) -> io.FileIO:
    """Open ``path`` for reading, refusing anything but a regular file.

    O_NONBLOCK keeps a FIFO planted where a file is expected from blocking the open; the type
    is then checked on the open descriptor, so a swap between check and open cannot fool it.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise MeasurementError(f"{path}: no such file", code="file_missing") from exc
    except OSError as exc:
        raise MeasurementError(
            f"cannot open {path}: {exc.strerror}", code="file_unreadable"
        ) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MeasurementError(f"{path} is not a regular file", code="not_a_file")
        os.set_blocking(fd, True)
        handle = io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise
    if hasattr(os, "posix_fadvise"):  # tell the kernel to read ahead aggressively
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    return handle


def hash_file(
    request: HashRequest | Path,
    *,
    chunk_size: int = CHUNK_SIZE,
    progress: ProgressCallback | None = None,
    abort: threading.Event | None = None,
) -> FileDigests:
    """Stream one file through the requested hashes, ``chunk_size`` bytes at a time.

    Raises ``MeasurementError`` when the file is missing, not a regular file, unreadable, or
    changes (size or mtime) while it is read.
    """
    if isinstance(request, Path):
        request = HashRequest(request)
    h384 = hashlib.sha384() if request.sha384 else None
    h256 = hashlib.sha256() if request.sha256 else None
    view = _buffer(chunk_size)
    size = 0
    with _open_regular(request.path, follow_symlinks=request.follow_symlinks) as handle:
        before = os.fstat(handle.fileno())
        # Read at most the size the file had when opened: a file that keeps growing would
        # otherwise keep us reading forever. Growth or truncation shows up in the checks below.
        remaining = before.st_size
        try:
            while remaining and (count := handle.readinto(view[: min(chunk_size, remaining)])):
                chunk = view[:count]
                if h384 is not None:
                    h384.update(chunk)
                if h256 is not None:
                    h256.update(chunk)
                size += count
                remaining -= count
                if progress is not None:
                    progress(count)
                if abort is not None and abort.is_set():
                    raise _AbortedError
        except OSError as exc:
            raise MeasurementError(
                f"cannot read {request.path}: {exc.strerror}", code="file_unreadable"
            ) from exc
        after = os.fstat(handle.fileno())
    # A file rewritten while we read it has no single digest; better to fail than to log one
    # that matches neither version.
    if size != before.st_size or (before.st_size, before.st_mtime_ns) != (
        after.st_size,
        after.st_mtime_ns,
    ):
        raise MeasurementError(f"{request.path} changed while it was measured", code="file_changed")
    return FileDigests(
        path=request.path,
        size=size,
        sha384=h384.digest() if h384 is not None else None,
        sha256=h256.digest() if h256 is not None else None,
    )


def default_workers() -> int:
    """Threads to hash with: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def hash_files(
    requests: Sequence[HashRequest],
    *,
    workers: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: ProgressCallback | None = None,
) -> list[FileDigests]:
    """Hash many files on ``workers`` threads; results are in the order of ``requests``.

    Files are started largest first (sizes from ``stat``), so one big file does not end up
    alone on one core at the end. A failure stops the remaining work (files in progress stop at
    their next chunk) and is raised.
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if workers == 1 or len(requests) <= 1:
        return [hash_file(r, chunk_size=chunk_size, progress=progress) for r in requests]

    def size_of(index: int) -> int:
        try:
            return requests[index].path.stat().st_size
        except OSError:
            return 0  # hash_file reports the real problem

    order = sorted(range(len(requests)), key=size_of, reverse=True)
    results: list[FileDigests | None] = [None] * len(requests)
    abort = threading.Event()

    def work(index: int) -> None:
        if abort.is_set():
            return
        try:
            results[index] = hash_file(
                requests[index], chunk_size=chunk_size, progress=progress, abort=abort
            )
        except BaseException:
            abort.set()
            raise

    with ThreadPoolExecutor(max_workers=min(workers, len(requests))) as pool:
        futures = {index: pool.submit(work, index) for index in order}
    failures = [
        (index, exc)
        for index, future in futures.items()
        if (exc := future.exception()) is not None and not isinstance(exc, _AbortedError)
    ]
    if failures:
        # Of the failures that happened before the abort, report the first in request order.
        raise min(failures, key=lambda pair: pair[0])[1]
    done = [result for result in results if result is not None]
    assert len(done) == len(requests)
    return done


class ProgressDisplay:
    """A thread-safe byte counter that shows a rich progress bar once work takes > ``delay``.

    Use it as the ``progress`` callback of the measuring functions, inside ``with``. The bar
    goes to ``console`` (default: stderr, so ``--json`` output on stdout stays clean) and is
    never shown when ``enabled`` is false or the console is not a terminal. ``callback``, if
    given, also receives every byte count. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        *,
        console: Console | None = None,
        enabled: bool = True,
        delay: float = 1.0,
        description: str = "measuring",
        callback: ProgressCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._console = console if console is not None else Console(stderr=True)
        self._enabled = enabled and self._console.is_terminal
        self._delay = delay
        self._description = description
        self._callback = callback
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._done = 0
        self._total: int | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._closed = False

    @property
    def shown(self) -> bool:
        """Whether the bar has been displayed."""
        return self._progress is not None

    @property
    def completed(self) -> int:
        """Bytes reported so far."""
        return self._done

    def add_total(self, nbytes: int) -> None:
        """Announce ``nbytes`` more bytes of work (the bar's total)."""
        with self._lock:
            self._total = (self._total or 0) + nbytes
            if self._progress is not None and self._task is not None:
                self._progress.update(self._task, total=self._total)

    def __call__(self, nbytes: int) -> None:
        if self._callback is not None:
            self._callback(nbytes)
        with self._lock:
            self._done += nbytes
            if self._progress is None:
                if self._closed or not self._enabled:
                    return
                if self._clock() - self._start <= self._delay:
                    return
                self._show()
            assert self._progress is not None
            assert self._task is not None
            self._progress.update(self._task, completed=self._done)

    def _show(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=True,
        )
        self._task = self._progress.add_task(
            self._description, total=self._total, completed=self._done
        )
        self._progress.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._progress is not None:
                self._progress.stop()

    def __enter__(self) -> ProgressDisplay:
        self._start = self._clock()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
