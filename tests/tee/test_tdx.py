"""The tdx backend against a directory tree laid out like the kernel's.

``FakeTdxKernel`` performs every call on the real filesystem under ``tmp_path`` and adds only
what the kernel would do in reaction: attribute files in a new configfs-tsm entry, the
generation bump on an inblob write, a quote produced when outblob is read, the attributes going
away on rmdir, and the SHA-384 extend on an RTMR3 write.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cllm.errors import TeeError
from cllm.measure import extend
from cllm.quote import parse_quote
from cllm.tee import SimulatedDcap
from cllm.tee._backend import TeeBackend
from cllm.tee._tdx import (
    CCEL_DATA_PATH,
    CCEL_TABLE_PATH,
    RTMR3_PATH,
    TSM_REPORT_PATH,
    OsKernelFs,
    TdxBackend,
)

SEED = b"cllm tdx backend test"
NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2027, 1, 1, tzinfo=UTC)
LOGGER = "cllm.tee._tdx"


@pytest.fixture(scope="module")
def dcap() -> SimulatedDcap:
    return SimulatedDcap.from_seed(SEED, not_before=NOT_BEFORE, not_after=NOT_AFTER)


def report_data(tag: int) -> bytes:
    return bytes([tag]) * 64


class FakeTdxKernel(OsKernelFs):
    """Real filesystem calls under ``root`` plus the kernel's reactions to them."""

    def __init__(
        self,
        root: Path,
        answer: Callable[[bytes], bytes],
        *,
        provider: str = "tdx_guest",
        foreign_writes: list[int] | None = None,
        generation: str = "0\n",
    ) -> None:
        self.root = root
        self.report_dir = root / TSM_REPORT_PATH
        self.rtmr3 = root / RTMR3_PATH
        self.answer = answer
        self.provider = provider
        self.generation = generation  # what a new entry's generation attribute reads
        # Extra generation bumps per inblob write, as if another writer raced us (-1: our
        # write did not land).
        self.foreign_writes = list(foreign_writes or [])
        self.outblob_error: OSError | None = None
        self.mkdir_error: OSError | None = None
        self.rtmr3_error: OSError | None = None
        self.foreign_extend: bytes | None = None  # another process extending RTMR3 after us
        self.entries: list[str] = []
        self.inblobs: list[bytes] = []
        self.outblobs: list[bytes] = []
        self.rtmr3_writes: list[bytes] = []
        self._lock = threading.Lock()
        self.report_dir.mkdir(parents=True)

    def add_rtmr3(self, value: bytes = bytes(48)) -> None:
        self.rtmr3.parent.mkdir(parents=True, exist_ok=True)
        self.rtmr3.write_bytes(value)

    def _is_entry(self, path: Path) -> bool:
        return path.parent == self.report_dir

    def mkdir(self, path: Path) -> None:
        if self.mkdir_error is not None:
            raise self.mkdir_error
        super().mkdir(path)
        if self._is_entry(path):  # configfs: a new entry comes with the provider's attributes
            with self._lock:
                self.entries.append(path.name)
            (path / "provider").write_text(f"{self.provider}\n")
            (path / "generation").write_text(self.generation)
            (path / "inblob").touch()
            (path / "outblob").touch()

    def rmdir(self, path: Path) -> None:
        if self._is_entry(path):  # configfs drops the attributes with the entry
            for child in path.iterdir():
                child.unlink()
        super().rmdir(path)

    def write(self, path: Path, data: bytes) -> None:
        if path == self.rtmr3:
            self._write_rtmr3(data)
            return
        super().write(path, data)
        if path.name == "inblob" and self._is_entry(path.parent):
            time.sleep(0.001)  # widen the window for interleaving threads
            with self._lock:
                landed = path.read_bytes()
                self.inblobs.append(landed)
                extra = self.foreign_writes.pop(0) if self.foreign_writes else 0
            generation = path.parent / "generation"
            generation.write_text(f"{int(generation.read_text()) + 1 + extra}\n")

    def read(self, path: Path) -> bytes:
        if path.name == "outblob" and self._is_entry(path.parent):
            if self.outblob_error is not None:
                raise self.outblob_error
            # The kernel produces the report when outblob is read, from the inblob it holds.
            outblob = self.answer((path.parent / "inblob").read_bytes())
            with self._lock:
                self.outblobs.append(outblob)
            return outblob
        return super().read(path)

    def _write_rtmr3(self, data: bytes) -> None:
        if self.rtmr3_error is not None:
            raise self.rtmr3_error
        before = self.rtmr3.read_bytes()
        super().write(self.rtmr3, data)
        landed = self.rtmr3.read_bytes()  # exactly what the backend's write(2) put there
        self.rtmr3_writes.append(landed)
        value = extend(before, landed)
        if self.foreign_extend is not None:
            value = extend(value, self.foreign_extend)
        self.rtmr3.write_bytes(value)


@pytest.fixture
def kernel(tmp_path: Path, dcap: SimulatedDcap) -> FakeTdxKernel:
    return FakeTdxKernel(tmp_path, lambda data: dcap.quote(report_data=data))


def backend_for(kernel: FakeTdxKernel, **kwargs: int) -> TdxBackend:
    return TdxBackend(root=kernel.root, fs=kernel, **kwargs)


def leftover_entries(kernel: FakeTdxKernel) -> list[str]:
    return sorted(p.name for p in kernel.report_dir.iterdir())


# -- quotes --------------------------------------------------------------------------------


def test_satisfies_the_backend_protocol(tmp_path: Path) -> None:
    backend: TeeBackend = TdxBackend(root=tmp_path)
    assert backend.name == "tdx"


def test_quote_is_the_outblob_and_the_entry_is_removed(kernel: FakeTdxKernel) -> None:
    quote = backend_for(kernel).get_quote(report_data(7))

    assert kernel.outblobs == [quote]
    assert parse_quote(quote).td_report.report_data == report_data(7)
    assert kernel.inblobs == [report_data(7)]
    assert len(kernel.entries) == 1
    assert re.fullmatch(rf"cllm-{os.getpid()}-[0-9a-f]{{32}}", kernel.entries[0])
    assert leftover_entries(kernel) == []


def test_each_quote_uses_a_fresh_entry(kernel: FakeTdxKernel) -> None:
    backend = backend_for(kernel)
    backend.get_quote(report_data(1))
    backend.get_quote(report_data(2))
    assert len(set(kernel.entries)) == 2


def test_no_tsm_directory_names_the_kernel_requirement(tmp_path: Path) -> None:
    with pytest.raises(TeeError) as info:
        TdxBackend(root=tmp_path).get_quote(report_data(1))
    assert info.value.code == "tsm_unavailable"
    assert "Linux 6.7" in info.value.message
    assert "CONFIG_TSM_REPORTS" in info.value.message
    assert "/sys/kernel/config" in info.value.message
    assert not (tmp_path / "sys").exists()  # nothing created on the way


def test_wrong_provider(tmp_path: Path, dcap: SimulatedDcap) -> None:
    kernel = FakeTdxKernel(tmp_path, lambda d: dcap.quote(report_data=d), provider="sev_guest")
    with pytest.raises(TeeError) as info:
        backend_for(kernel).get_quote(report_data(1))
    assert info.value.code == "tsm_wrong_provider"
    assert "sev_guest" in info.value.message
    assert kernel.inblobs == []  # checked before any report data is handed over
    assert leftover_entries(kernel) == []


def test_generation_race_once_then_retry_succeeds(
    kernel: FakeTdxKernel, caplog: pytest.LogCaptureFixture
) -> None:
    kernel.foreign_writes = [1]  # moves by 2, then by 1
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        quote = backend_for(kernel).get_quote(report_data(3))
    assert parse_quote(quote).td_report.report_data == report_data(3)
    assert len(kernel.entries) == 2
    assert "moved by 2" in caplog.text
    assert leftover_entries(kernel) == []


@pytest.mark.parametrize("attempts", [1, 3, 5])
def test_generation_race_every_time_gives_up(kernel: FakeTdxKernel, attempts: int) -> None:
    kernel.foreign_writes = [1] * 10
    with pytest.raises(TeeError) as info:
        backend_for(kernel, quote_attempts=attempts).get_quote(report_data(3))
    assert info.value.code == "tsm_generation_race"
    assert len(kernel.entries) == attempts
    assert leftover_entries(kernel) == []


def test_quote_attempts_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quote_attempts"):
        TdxBackend(root=tmp_path, quote_attempts=0)


def _answer_other_report_data(dcap: SimulatedDcap) -> Callable[[bytes], bytes]:
    return lambda data: dcap.quote(report_data=bytes(64))


FAILURES: list[tuple[str, str]] = [
    ("wrong_provider", "tsm_wrong_provider"),
    ("outblob_eio", "tsm_quote_failed"),
    ("outblob_empty", "tsm_outblob_empty"),
    ("outblob_short", "tsm_outblob_malformed"),
    ("other_report_data", "tsm_report_mismatch"),
    ("inblob_not_applied", "tsm_inblob_not_applied"),
    ("generation_garbage", "tsm_io_error"),
    ("race_forever", "tsm_generation_race"),
]


@pytest.mark.parametrize(("failure", "code"), FAILURES)
def test_every_failure_removes_the_entry(
    tmp_path: Path, dcap: SimulatedDcap, failure: str, code: str
) -> None:
    def quote(data: bytes) -> bytes:
        return dcap.quote(report_data=data)

    answer: Callable[[bytes], bytes] = {
        "outblob_empty": lambda data: b"",
        "outblob_short": lambda data: quote(data)[:100],
        "other_report_data": _answer_other_report_data(dcap),
    }.get(failure, quote)
    kernel = FakeTdxKernel(
        tmp_path, answer, provider="sev_guest" if failure == "wrong_provider" else "tdx_guest"
    )
    if failure == "outblob_eio":
        kernel.outblob_error = OSError(errno.EIO, os.strerror(errno.EIO))
    if failure == "inblob_not_applied":
        kernel.foreign_writes = [-1]
    if failure == "race_forever":
        kernel.foreign_writes = [5] * 10
    if failure == "generation_garbage":
        kernel.generation = "not a number\n"

    with pytest.raises(TeeError) as info:
        backend_for(kernel).get_quote(report_data(9))
    assert info.value.code == code
    assert kernel.entries  # an entry was made ...
    assert leftover_entries(kernel) == []  # ... and removed


def test_quote_failure_explains_eio(kernel: FakeTdxKernel) -> None:
    kernel.outblob_error = OSError(errno.EIO, os.strerror(errno.EIO))
    with pytest.raises(TeeError, match="quote generation service") as info:
        backend_for(kernel).get_quote(report_data(1))
    assert info.value.code == "tsm_quote_failed"
    assert isinstance(info.value.__cause__, OSError)


def test_mkdir_refused(kernel: FakeTdxKernel) -> None:
    kernel.mkdir_error = PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    with pytest.raises(TeeError, match="root") as info:
        backend_for(kernel).get_quote(report_data(1))
    assert info.value.code == "tsm_permission_denied"


def test_no_provider_registered(kernel: FakeTdxKernel) -> None:
    kernel.mkdir_error = OSError(errno.ENXIO, os.strerror(errno.ENXIO))
    with pytest.raises(TeeError, match="tdx_guest driver") as info:
        backend_for(kernel).get_quote(report_data(1))
    assert info.value.code == "tsm_unavailable"


def test_trailing_bytes_after_the_quote_are_dropped(tmp_path: Path, dcap: SimulatedDcap) -> None:
    kernel = FakeTdxKernel(tmp_path, lambda data: dcap.quote(report_data=data) + bytes(16))
    quote = backend_for(kernel).get_quote(report_data(4))
    assert quote == kernel.outblobs[0][:-16]
    assert parse_quote(quote).trailing_bytes == 0


def test_concurrent_callers_get_their_own_quotes(kernel: FakeTdxKernel) -> None:
    backend = backend_for(kernel)
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(tag: int) -> None:
        try:
            barrier.wait()
            results[tag] = backend.get_quote(report_data(tag))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(tag,)) for tag in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(results) == list(range(1, 9))
    for tag, quote in results.items():
        assert parse_quote(quote).td_report.report_data == report_data(tag)
    assert len(set(kernel.entries)) == 8
    assert leftover_entries(kernel) == []


@pytest.mark.parametrize("size", [0, 32, 63, 65])
def test_report_data_must_be_64_bytes(kernel: FakeTdxKernel, size: int) -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        backend_for(kernel).get_quote(bytes(size))
    assert kernel.entries == []


# -- RTMR3 ---------------------------------------------------------------------------------


def test_rtmr3_missing_names_the_kernel_requirement(tmp_path: Path) -> None:
    backend = TdxBackend(root=tmp_path)
    with pytest.raises(TeeError) as info:
        backend.extend_rtmr3(bytes(48))
    assert info.value.code == "rtmr_unavailable"
    assert "Linux 6.16" in info.value.message
    assert not (tmp_path / RTMR3_PATH).exists()  # not created as a plain file
    assert backend.read_rtmr3() is None


def test_rtmr3_unwritable_directory(tmp_path: Path) -> None:
    # A directory in place of the attribute: open(O_WRONLY) fails even for root, which would
    # ignore a 0o444 mode.
    (tmp_path / RTMR3_PATH).mkdir(parents=True)
    with pytest.raises(TeeError) as info:
        TdxBackend(root=tmp_path).extend_rtmr3(bytes(48))
    assert info.value.code == "rtmr_extend_failed"
    assert isinstance(info.value.__cause__, IsADirectoryError)


def test_rtmr3_write_refused_by_the_kernel(kernel: FakeTdxKernel) -> None:
    kernel.add_rtmr3()
    kernel.rtmr3_error = PermissionError(errno.EPERM, os.strerror(errno.EPERM))
    with pytest.raises(TeeError) as info:
        backend_for(kernel).extend_rtmr3(bytes(48))
    assert info.value.code == "rtmr_extend_failed"


def test_rtmr3_written_bytes_are_exactly_the_digest(tmp_path: Path) -> None:
    path = tmp_path / RTMR3_PATH
    path.parent.mkdir(parents=True)
    path.touch()
    digest = bytes(range(48))
    TdxBackend(root=tmp_path).extend_rtmr3(digest)
    assert path.read_bytes() == digest


def test_rtmr3_extend_through_the_kernel(
    kernel: FakeTdxKernel, caplog: pytest.LogCaptureFixture
) -> None:
    kernel.add_rtmr3()
    backend = backend_for(kernel)
    first, second = bytes([1]) * 48, bytes([2]) * 48
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        backend.extend_rtmr3(first)
        backend.extend_rtmr3(second)
    assert kernel.rtmr3_writes == [first, second]
    assert backend.read_rtmr3() == extend(extend(bytes(48), first), second)
    assert caplog.text == ""


def test_rtmr3_concurrent_foreign_extend_is_logged(
    kernel: FakeTdxKernel, caplog: pytest.LogCaptureFixture
) -> None:
    kernel.add_rtmr3()
    kernel.foreign_extend = bytes([9]) * 48
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        backend_for(kernel).extend_rtmr3(bytes([1]) * 48)
    assert "another process" in caplog.text


@pytest.mark.parametrize("size", [0, 32, 47, 49, 64])
def test_rtmr3_digest_must_be_48_bytes(kernel: FakeTdxKernel, size: int) -> None:
    kernel.add_rtmr3()
    with pytest.raises(ValueError, match="48 bytes"):
        backend_for(kernel).extend_rtmr3(bytes(size))
    assert kernel.rtmr3_writes == []


def test_rtmr3_read_of_wrong_size(tmp_path: Path) -> None:
    path = tmp_path / RTMR3_PATH
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes(10))
    with pytest.raises(TeeError) as info:
        TdxBackend(root=tmp_path).read_rtmr3()
    assert info.value.code == "rtmr_read_failed"


# -- CCEL ----------------------------------------------------------------------------------


def ccel_table() -> bytes:
    # ACPI 6.5 5.2.34: 36-byte header, CC type (2: TDX), subtype, reserved, LAML, LASA.
    body = bytes([2, 0]) + bytes(2) + (0x10000).to_bytes(8, "little") + bytes(8)
    length = 36 + len(body)
    return b"CCEL" + length.to_bytes(4, "little") + bytes(28) + body


def write_ccel(root: Path, table: bytes | None, data: bytes | None) -> None:
    for relative, content in ((CCEL_TABLE_PATH, table), (CCEL_DATA_PATH, data)):
        if content is not None:
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(content)


def test_ccel_present(tmp_path: Path) -> None:
    write_ccel(tmp_path, ccel_table(), b"event log")
    assert TdxBackend(root=tmp_path).read_ccel() == (ccel_table(), b"event log")


def test_ccel_absent(tmp_path: Path) -> None:
    assert TdxBackend(root=tmp_path).read_ccel() is None


def test_ccel_table_without_data_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_ccel(tmp_path, ccel_table(), None)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert TdxBackend(root=tmp_path).read_ccel() is None
    assert "Linux 6.4" in caplog.text


def test_ccel_unreadable(tmp_path: Path) -> None:
    write_ccel(tmp_path, ccel_table(), None)
    (tmp_path / CCEL_DATA_PATH).mkdir(parents=True)  # read() fails with EISDIR, even for root
    with pytest.raises(TeeError) as info:
        TdxBackend(root=tmp_path).read_ccel()
    assert info.value.code == "ccel_unreadable"


@pytest.mark.parametrize(
    "table",
    [b"", b"CCEL", b"XSDT" + ccel_table()[4:], ccel_table()[:-1], ccel_table() + b"\0"],
)
def test_ccel_malformed_table(tmp_path: Path, table: bytes) -> None:
    write_ccel(tmp_path, table, b"event log")
    with pytest.raises(TeeError) as info:
        TdxBackend(root=tmp_path).read_ccel()
    assert info.value.code == "ccel_malformed"


# -- availability --------------------------------------------------------------------------


def test_available_without_tsm(tmp_path: Path) -> None:
    ok, reason = TdxBackend.available(tmp_path)
    assert not ok
    assert "Linux 6.7" in reason


def test_available_on_a_tdx_guest(kernel: FakeTdxKernel) -> None:
    ok, reason = TdxBackend.available(kernel.root, fs=kernel)
    assert ok
    assert "tdx_guest" in reason
    assert "RTMR3 extend unavailable" in reason
    assert "Linux 6.16" in reason
    assert "no CCEL event log" in reason
    assert kernel.inblobs == []  # probing generates no quote
    assert len(kernel.entries) == 1
    assert leftover_entries(kernel) == []

    kernel.add_rtmr3()
    write_ccel(kernel.root, ccel_table(), b"event log")
    ok, reason = TdxBackend.available(kernel.root, fs=kernel)
    assert ok
    assert "RTMR3 extend available" in reason
    assert "CCEL event log present" in reason


def test_available_with_another_provider(tmp_path: Path, dcap: SimulatedDcap) -> None:
    kernel = FakeTdxKernel(tmp_path, lambda d: dcap.quote(report_data=d), provider="sev_guest")
    ok, reason = TdxBackend.available(tmp_path, fs=kernel)
    assert not ok
    assert "sev_guest" in reason
    assert leftover_entries(kernel) == []


def test_available_when_entries_are_refused(kernel: FakeTdxKernel) -> None:
    kernel.mkdir_error = PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    ok, reason = TdxBackend.available(kernel.root, fs=kernel)
    assert not ok
    assert "root" in reason
