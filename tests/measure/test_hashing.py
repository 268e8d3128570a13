"""Streamed and parallel hashing, and the delayed progress bar."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cllm.errors import MeasurementError
from cllm.measure import _hashing, hash_file, hash_files
from cllm.measure._hashing import CHUNK_SIZE, HashRequest, ProgressDisplay

SMALL_CHUNK = 1024


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "size", [0, 1, SMALL_CHUNK - 1, SMALL_CHUNK, SMALL_CHUNK + 1, 3 * SMALL_CHUNK + 5]
)
def test_streamed_equals_whole_bytes(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = write(tmp_path / "f", data)
    result = hash_file(HashRequest(path, sha256=True), chunk_size=SMALL_CHUNK)
    assert result.size == size
    assert result.sha384 == hashlib.sha384(data).digest()
    assert result.sha256 == hashlib.sha256(data).digest()


def test_default_chunk_on_file_larger_than_a_chunk(tmp_path: Path) -> None:
    data = os.urandom(CHUNK_SIZE + 12345)
    path = write(tmp_path / "big", data)
    result = hash_file(path)
    assert result.sha384 == hashlib.sha384(data).digest()
    assert result.sha256 is None


def test_sha256_only(tmp_path: Path) -> None:
    path = write(tmp_path / "f", b"abc")
    result = hash_file(HashRequest(path, sha384=False, sha256=True))
    assert result.sha384 is None
    assert result.sha256 == hashlib.sha256(b"abc").digest()


@pytest.fixture
def read_guard(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Files open as a FileIO that fails on any unbounded read and records buffer sizes."""
    sizes: list[int] = []
    real_open = _hashing._open_regular

    class Guarded(io.FileIO):
        def read(self, size: int | None = -1) -> bytes:
            if size is None or size < 0:
                raise AssertionError("whole-file read")
            sizes.append(size)
            return super().read(size)

        def readall(self) -> bytes:
            raise AssertionError("whole-file read")

        def readinto(self, buffer: Any) -> int:
            sizes.append(len(buffer))
            return super().readinto(buffer)

    def open_guarded(path: Path, *, follow_symlinks: bool = True) -> io.FileIO:
        # The real opener's checks (regular file, no FIFO), then the guarded reader on a dup.
        with real_open(path, follow_symlinks=follow_symlinks) as handle:
            return Guarded(os.dup(handle.fileno()), "rb", closefd=True)

    monkeypatch.setattr(_hashing, "_open_regular", open_guarded)
    return sizes


def test_never_reads_a_whole_file(tmp_path: Path, read_guard: list[int]) -> None:
    data = os.urandom(5 * SMALL_CHUNK + 3)
    path = write(tmp_path / "f", data)
    result = hash_file(path, chunk_size=SMALL_CHUNK)
    assert result.sha384 == hashlib.sha384(data).digest()
    assert len(read_guard) >= 6  # several bounded reads, each at most one chunk
    assert max(read_guard) <= SMALL_CHUNK


def test_progress_reports_bytes(tmp_path: Path) -> None:
    data = os.urandom(4 * SMALL_CHUNK + 1)
    path = write(tmp_path / "f", data)
    reported: list[int] = []
    hash_file(path, chunk_size=SMALL_CHUNK, progress=reported.append)
    assert sum(reported) == len(data)
    assert len(reported) == 5


def test_parallel_equals_sequential_and_keeps_request_order(tmp_path: Path) -> None:
    # Different sizes: the pool starts the largest first, so completion order differs from
    # request order; results must still come back in request order.
    requests = [
        HashRequest(write(tmp_path / f"f{i}", os.urandom(i * 7919 % 50_000)), sha256=i % 2 == 0)
        for i in range(40)
    ]
    sequential = hash_files(requests, workers=1, chunk_size=SMALL_CHUNK)
    parallel = hash_files(requests, workers=4, chunk_size=SMALL_CHUNK)
    assert parallel == sequential
    assert [r.path for r in parallel] == [r.path for r in requests]
    for request, result in zip(requests, parallel, strict=True):
        data = request.path.read_bytes()
        assert result.sha384 == hashlib.sha384(data).digest()


def test_parallel_progress_totals(tmp_path: Path) -> None:
    paths = [write(tmp_path / f"f{i}", os.urandom(10_000 + i)) for i in range(8)]
    total = [0]
    lock = threading.Lock()

    def count(nbytes: int) -> None:
        with lock:
            total[0] += nbytes

    hash_files([HashRequest(p) for p in paths], workers=4, progress=count, chunk_size=4096)
    assert total[0] == sum(p.stat().st_size for p in paths)


def test_first_error_in_request_order(tmp_path: Path) -> None:
    good = [HashRequest(write(tmp_path / f"g{i}", b"x" * 1000)) for i in range(5)]
    missing = [HashRequest(tmp_path / "missing-a"), HashRequest(tmp_path / "missing-b")]
    requests = [good[0], missing[0], *good[1:], missing[1]]
    with pytest.raises(MeasurementError, match="missing-a") as caught:
        hash_files(requests, workers=3)
    assert caught.value.code == "file_missing"


def test_rejects_non_regular_files(tmp_path: Path) -> None:
    with pytest.raises(MeasurementError) as caught:
        hash_file(tmp_path)
    assert caught.value.code == "not_a_file"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(MeasurementError) as caught:  # must not block on open
        hash_file(fifo)
    assert caught.value.code == "not_a_file"


def test_symlink_not_followed_when_asked(tmp_path: Path) -> None:
    target = write(tmp_path / "target", b"data")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert hash_file(link).sha384 == hashlib.sha384(b"data").digest()
    with pytest.raises(MeasurementError) as caught:
        hash_file(HashRequest(link, follow_symlinks=False))
    assert caught.value.code == "file_unreadable"


def test_file_changing_during_measurement(tmp_path: Path) -> None:
    path = write(tmp_path / "f", os.urandom(4 * SMALL_CHUNK))

    def grow(_: int) -> None:
        # Growing on every chunk: a reader that follows the file's end would never finish.
        with path.open("ab") as handle:
            handle.write(b"more")

    with pytest.raises(MeasurementError) as caught:
        hash_file(path, chunk_size=SMALL_CHUNK, progress=grow)
    assert caught.value.code == "file_changed"
    assert path.stat().st_size == 4 * SMALL_CHUNK + 4 * 4  # stopped after the original size


def test_workers_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        hash_files([HashRequest(tmp_path)], workers=0)


# --- Progress display --------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=100), out


def test_progress_hidden_for_fast_work() -> None:
    console, out = terminal()
    clock = FakeClock()
    with ProgressDisplay(console=console, clock=clock) as display:
        for _ in range(10):
            clock.now += 0.05  # half a second in all
            display(1000)
    assert not display.shown
    assert display.completed == 10_000
    assert out.getvalue() == ""


def test_progress_shown_for_slow_work() -> None:
    console, out = terminal()
    clock = FakeClock()
    reported: list[int] = []
    with ProgressDisplay(console=console, clock=clock, callback=reported.append) as display:
        display.add_total(3000)
        display(1000)
        clock.now += 1.5
        display(1000)
        display(1000)
        assert display.shown
    assert reported == [1000, 1000, 1000]
    assert "measuring" in out.getvalue()


@pytest.mark.parametrize("terminal_console", [False, True])
def test_progress_off_when_not_a_tty_or_disabled(terminal_console: bool) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal_console)
    clock = FakeClock()
    reported: list[int] = []
    enabled = not terminal_console  # a terminal, but disabled; or enabled, but no terminal
    with ProgressDisplay(
        console=console, enabled=enabled, clock=clock, callback=reported.append
    ) as display:
        display(1)
        clock.now += 10
        display(1)
    assert not display.shown
    assert reported == [1, 1]  # callbacks still report bytes
    assert out.getvalue() == ""
