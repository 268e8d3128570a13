"""The ``tdx`` backend: quotes, RTMR3 extends and the firmware event log through the Linux
kernel's standard interfaces - no Intel SDK, no ioctl, no daemon inside the TD.

- Quotes: configfs-tsm, ``/sys/kernel/config/tsm/report`` (Linux 6.7+).
- RTMR3: ``/sys/class/misc/tdx_guest/measurements/rtmr3:sha384`` (Linux 6.16+).
- CCEL: ``/sys/firmware/acpi/tables/CCEL`` and ``.../tables/data/CCEL`` (the latter Linux 6.4+).

Every path hangs off ``root`` (default ``/``) and every kernel access goes through one narrow
seam, ``KernelFs``. Tests lay out a directory tree like the kernel's and wrap the real
filesystem calls with only the kernel's reactions (attribute files appearing in a new report
entry, the generation bump and the outblob on an inblob write, the extend on an RTMR write).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Final, Protocol

from cllm.errors import QuoteFormatError, TeeError
from cllm.measure import extend
from cllm.quote import layout, parse_quote
from cllm.tee._backend import REPORT_DATA_SIZE, RTMR_DIGEST_SIZE

__all__ = ["DEFAULT_QUOTE_ATTEMPTS", "TSM_PROVIDER_TDX", "KernelFs", "OsKernelFs", "TdxBackend"]

_log = logging.getLogger(__name__)

# Kernel facts this module relies on. configfs-tsm: Documentation/ABI/testing/configfs-tsm-report
# and drivers/virt/coco/guest/report.c (tsm.c before 6.15); the TDX provider:
# drivers/virt/coco/tdx-guest/tdx-guest.c.
# - mkdir under report/ creates an entry; for TDX it shows generation, provider, inblob and
#   outblob (tdx_report_attr_visible / tdx_report_bin_attr_visible). rmdir drops it.
# - inblob (write-only) takes up to 64 bytes; tdx_guest wants exactly 64 (EINVAL otherwise).
#   It is a configfs binary attribute: the data is buffered and handed over on close(), whose
#   result configfs ignores (fs/configfs/file.c, configfs_release_bin_file) - only
#   ``generation`` tells whether it landed.
# - outblob (read-only): reading it produces the report for the current inblob (GetQuote through
#   the host's quote service): EIO when the host reports failure, ETIMEDOUT when it never
#   answers, EBUSY while an earlier timed-out request is still in flight, EFBIG beyond 32 KiB.
# - provider (read-only) names the outblob format: "tdx_guest" for Intel TDX (DCAP quotes).
# - generation (read-only, "%lu\n") counts writes to inblob and the options. The ABI document
#   suggests reading it before writing and checking, after reading outblob, that it moved by
#   exactly the number of our own writes - or using one entry per requester. We do both.
TSM_REPORT_PATH: Final = "sys/kernel/config/tsm/report"
# /sys/class/misc/tdx_guest links to /sys/devices/virtual/misc/tdx_guest, where the ABI document
# (sysfs-devices-virtual-misc-tdx_guest, 6.16) has rtmr[0-3]:sha384: reading gives the register,
# writing 48 bytes at offset 0 extends it; partial writes fail with EINVAL.
RTMR3_PATH: Final = "sys/class/misc/tdx_guest/measurements/rtmr3:sha384"
CCEL_TABLE_PATH: Final = "sys/firmware/acpi/tables/CCEL"
CCEL_DATA_PATH: Final = "sys/firmware/acpi/tables/data/CCEL"  # ACPI: sysfs CCEL records, 6.4

TSM_PROVIDER_TDX: Final = "tdx_guest"
DEFAULT_QUOTE_ATTEMPTS: Final = 3

_TSM_REQUIREMENT: Final = (
    "Linux 6.7+ with TDX guest support (CONFIG_TSM_REPORTS and the tdx_guest driver, "
    "CONFIG_TDX_GUEST_DRIVER) and configfs mounted at /sys/kernel/config"
)
_RTMR_REQUIREMENT: Final = (
    "Linux 6.16+ with the TDX measurement-register sysfs of the tdx_guest driver "
    "(CONFIG_TDX_GUEST_DRIVER)"
)
_READ_CHUNK: Final = 64 * 1024  # configfs-tsm caps blobs at 32 KiB: one chunk, normally
_CWT_QUOTE_SIZE: Final = 8 * 1024  # the ABI: TDX quotes above 8 KiB are DICE-based CWTs
_ACPI_HEADER_SIZE: Final = 36

# One lock per process, not per backend: two backends on the same root must not interleave
# either, and the TD can only produce one quote at a time anyway (tdx_guest serializes GetQuote
# requests), so serializing here costs nothing.
_QUOTE_LOCK: Final = threading.Lock()
_RTMR_LOCK: Final = threading.Lock()


class KernelFs(Protocol):
    """The only way this module touches the kernel. Paths are absolute (``root`` is already
    applied); failures are the ``OSError`` subclasses the real system calls raise."""

    def exists(self, path: Path) -> bool: ...

    def mkdir(self, path: Path) -> None: ...

    def rmdir(self, path: Path) -> None: ...

    def read(self, path: Path) -> bytes: ...

    def write(self, path: Path, data: bytes) -> None: ...


class OsKernelFs:
    """``KernelFs`` on the real filesystem."""

    def exists(self, path: Path) -> bool:
        return path.exists()

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def read(self, path: Path) -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, _READ_CHUNK):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def write(self, path: Path, data: bytes) -> None:
        # One write(2) at offset 0, and neither O_CREAT nor O_TRUNC: the RTMR attributes refuse
        # partial writes, and a missing kernel attribute must surface as FileNotFoundError
        # rather than be created as a plain file.
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)  # for configfs binary attributes, this is where the write lands
        if written != len(data):
            raise OSError(errno.EIO, f"short write: {written} of {len(data)} bytes", str(path))


class TdxBackend:
    """Intel TDX through the kernel: configfs-tsm quotes, sysfs RTMR3 extends, ACPI CCEL.

    ``quote_attempts`` bounds the retries when a report entry's generation shows a foreign
    write. Thread-safe: concurrent callers are serialized and each quote uses its own entry.
    """

    name: Final[str] = "tdx"

    def __init__(
        self,
        *,
        root: Path = Path("/"),
        fs: KernelFs | None = None,
        quote_attempts: int = DEFAULT_QUOTE_ATTEMPTS,
    ) -> None:
        if quote_attempts < 1:
            raise ValueError(f"quote_attempts must be at least 1, got {quote_attempts}")
        self.root = Path(root)
        self.report_dir = self.root / TSM_REPORT_PATH
        self.rtmr3_path = self.root / RTMR3_PATH
        self.ccel_table_path = self.root / CCEL_TABLE_PATH
        self.ccel_data_path = self.root / CCEL_DATA_PATH
        self._fs: KernelFs = fs if fs is not None else OsKernelFs()
        self._quote_attempts = quote_attempts

    # -- availability -----------------------------------------------------------------------

    @classmethod
    def available(cls, root: Path = Path("/"), *, fs: KernelFs | None = None) -> tuple[bool, str]:
        """Whether ``root`` is a TDX guest that can quote, and why (for people)."""
        return cls(root=root, fs=fs).probe()

    def probe(self) -> tuple[bool, str]:
        """Like ``available``. Creates and removes one report entry to read its provider, but
        writes no inblob, so no quote is generated."""
        if not self._fs.exists(self.report_dir):
            return False, self._tsm_unavailable().message
        try:
            with _QUOTE_LOCK:
                entry = self._new_entry()
                try:
                    self._check_provider(entry)
                finally:
                    self._remove_entry(entry)
        except TeeError as exc:
            return False, exc.message
        rtmr = (
            "RTMR3 extend available"
            if self._fs.exists(self.rtmr3_path)
            else f"RTMR3 extend unavailable ({self.rtmr3_path} missing; needs {_RTMR_REQUIREMENT})"
        )
        ccel = (
            "CCEL event log present"
            if self._fs.exists(self.ccel_table_path) and self._fs.exists(self.ccel_data_path)
            else "no CCEL event log"
        )
        return True, (
            f"Intel TDX guest: quotes through configfs-tsm at {self.report_dir} "
            f"(provider {TSM_PROVIDER_TDX}); {rtmr}; {ccel}"
        )

    # -- quotes -----------------------------------------------------------------------------

    def get_quote(self, report_data: bytes) -> bytes:
        """A TDX quote whose REPORTDATA is ``report_data`` (exactly 64 bytes).

        The outblob is checked to be a TDX DCAP quote carrying exactly these 64 bytes; bytes
        after the quote's declared end (unsigned) are dropped.
        """
        report_data = _exact(report_data, REPORT_DATA_SIZE, "report_data")
        if not self._fs.exists(self.report_dir):
            raise self._tsm_unavailable()
        with _QUOTE_LOCK:
            for attempt in range(1, self._quote_attempts + 1):
                quote = self._quote_once(report_data, attempt)
                if quote is not None:
                    return quote
        raise TeeError(
            f"another writer touched the configfs-tsm report entry on each of "
            f"{self._quote_attempts} attempts (generation moved by more than our one write); "
            f"something else is writing under {self.report_dir}",
            code="tsm_generation_race",
        )

    def _quote_once(self, report_data: bytes, attempt: int) -> bytes | None:
        """One quote through a fresh entry, or None when the generation shows a foreign write."""
        entry = self._new_entry()
        try:
            self._check_provider(entry)
            before = self._generation(entry)
            try:
                self._fs.write(entry / "inblob", report_data)
            except OSError as exc:
                raise TeeError(
                    f"writing {entry / 'inblob'} failed: {_reason(exc)}", code="tsm_io_error"
                ) from exc
            outblob = self._read_outblob(entry)
            after = self._generation(entry)
        finally:
            self._remove_entry(entry)
        moved = after - before
        if moved > 1:
            _log.warning(
                "configfs-tsm generation moved by %d instead of 1 (attempt %d of %d): "
                "discarding the report and retrying with a fresh entry",
                moved,
                attempt,
                self._quote_attempts,
            )
            return None
        if moved < 1:
            # The write's result is dropped by configfs on close(), so this is where a refused
            # inblob shows up.
            raise TeeError(
                f"the inblob write did not reach the kernel (generation moved by {moved})",
                code="tsm_inblob_not_applied",
            )
        return _checked_quote(outblob, report_data)

    def _new_entry(self) -> Path:
        # Unique per call (pid + 128 random bits): another process, or a stale entry of a
        # crashed one, never shares our entry.
        entry = self.report_dir / f"cllm-{os.getpid()}-{secrets.token_hex(16)}"
        try:
            self._fs.mkdir(entry)
        except FileNotFoundError as exc:
            raise self._tsm_unavailable() from exc
        except PermissionError as exc:
            raise TeeError(
                f"creating a report entry in {self.report_dir} was refused ({_reason(exc)}); "
                "configfs-tsm needs root",
                code="tsm_permission_denied",
            ) from exc
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # configfs-tsm is there, but no provider registered
                raise TeeError(
                    f"no TSM provider is registered for {self.report_dir}: is the tdx_guest "
                    f"driver loaded? Quotes need {_TSM_REQUIREMENT}",
                    code="tsm_unavailable",
                ) from exc
            raise TeeError(f"creating {entry} failed: {_reason(exc)}", code="tsm_io_error") from exc
        return entry

    def _remove_entry(self, entry: Path) -> None:
        try:
            self._fs.rmdir(entry)
        except OSError as exc:
            # Never masks the real outcome; a leaked entry costs a little kernel memory.
            _log.warning("could not remove configfs-tsm entry %s: %s", entry, _reason(exc))

    def _attribute(self, entry: Path, name: str) -> str:
        path = entry / name
        try:
            return self._fs.read(path).decode("ascii").strip()
        except OSError as exc:
            raise TeeError(f"reading {path} failed: {_reason(exc)}", code="tsm_io_error") from exc
        except UnicodeDecodeError as exc:
            raise TeeError(f"{path} is not ASCII text", code="tsm_io_error") from exc

    def _check_provider(self, entry: Path) -> None:
        provider = self._attribute(entry, "provider")
        if provider != TSM_PROVIDER_TDX:
            raise TeeError(
                f"configfs-tsm provider is {provider!r}, not {TSM_PROVIDER_TDX!r}: this is not "
                "an Intel TDX guest (sev_guest is AMD SEV-SNP)",
                code="tsm_wrong_provider",
            )

    def _generation(self, entry: Path) -> int:
        text = self._attribute(entry, "generation")
        try:
            return int(text)
        except ValueError as exc:
            raise TeeError(
                f"{entry / 'generation'} is not a number: {text!r}", code="tsm_io_error"
            ) from exc

    def _read_outblob(self, entry: Path) -> bytes:
        path = entry / "outblob"
        try:
            return self._fs.read(path)
        except OSError as exc:
            hint = _OUTBLOB_ERRNO_HINTS.get(exc.errno or 0)
            raise TeeError(
                f"reading {path} failed: {_reason(exc)}" + (f" ({hint})" if hint else ""),
                code="tsm_quote_failed",
            ) from exc

    def _tsm_unavailable(self) -> TeeError:
        return TeeError(
            f"no configfs-tsm report interface at {self.report_dir}: TDX quotes need "
            f"{_TSM_REQUIREMENT}",
            code="tsm_unavailable",
        )

    # -- RTMR3 ------------------------------------------------------------------------------

    def extend_rtmr3(self, digest: bytes) -> None:
        """RTMR3 := SHA-384(RTMR3 || digest) through the tdx_guest sysfs attribute.

        Where the attribute is readable (it is, on 6.16+, for root), the register is read
        before and after: if the new value is not the extend of the old one, another process
        extended RTMR3 in between, so this process's event log alone will not replay it -
        that is logged as a warning, not raised, because the extend itself did happen.
        """
        digest = _exact(digest, RTMR_DIGEST_SIZE, "digest")
        path = self.rtmr3_path
        with _RTMR_LOCK:
            before = self._try_read_rtmr3()
            try:
                self._fs.write(path, digest)
            except FileNotFoundError as exc:
                raise TeeError(
                    f"no RTMR3 attribute at {path}: extending RTMR3 needs {_RTMR_REQUIREMENT}",
                    code="rtmr_unavailable",
                ) from exc
            except OSError as exc:
                raise TeeError(
                    f"extending RTMR3 through {path} failed: {_reason(exc)}",
                    code="rtmr_extend_failed",
                ) from exc
            after = self._try_read_rtmr3()
        if before is not None and after is not None and after != extend(before, digest):
            _log.warning(
                "RTMR3 is not SHA-384(previous || digest) after our extend: another process "
                "extended it concurrently, so this process's event log will not replay it"
            )
        _log.debug("extended RTMR3 by %s", digest.hex())

    def read_rtmr3(self) -> bytes | None:
        """The current RTMR3 (48 bytes), or None where the attribute does not exist."""
        path = self.rtmr3_path
        try:
            value = self._fs.read(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TeeError(
                f"reading {path} failed: {_reason(exc)}", code="rtmr_read_failed"
            ) from exc
        if len(value) != RTMR_DIGEST_SIZE:
            raise TeeError(
                f"{path} gave {len(value)} bytes, not {RTMR_DIGEST_SIZE}", code="rtmr_read_failed"
            )
        return value

    def _try_read_rtmr3(self) -> bytes | None:
        try:
            return self.read_rtmr3()
        except TeeError as exc:
            _log.debug("RTMR3 not readable, extend not cross-checked: %s", exc)
            return None

    # -- CCEL -------------------------------------------------------------------------------

    def read_ccel(self) -> tuple[bytes, bytes] | None:
        """(ACPI CCEL table, event-log area), or None where the firmware publishes none.

        A table without its data file (kernels before 6.4) also gives None, with a warning:
        the log exists but this kernel does not expose it.
        """
        table = self._read_optional(self.ccel_table_path)
        if table is None:
            return None
        data = self._read_optional(self.ccel_data_path)
        if data is None:
            _log.warning(
                "ACPI CCEL table present but its event log is not exposed at %s (Linux 6.4+)",
                self.ccel_data_path,
            )
            return None
        declared = int.from_bytes(table[4:8], "little") if len(table) >= 8 else -1
        if len(table) < _ACPI_HEADER_SIZE or table[:4] != b"CCEL" or declared != len(table):
            raise TeeError(
                f"{self.ccel_table_path} is not an ACPI CCEL table "
                f"({len(table)} bytes, signature {table[:4]!r})",
                code="ccel_malformed",
            )
        return table, data

    def _read_optional(self, path: Path) -> bytes | None:
        try:
            return self._fs.read(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TeeError(
                f"reading {path} failed: {_reason(exc)} (ACPI tables are readable by root only)",
                code="ccel_unreadable",
            ) from exc


# From tdx-guest.c's tdx_report_new and the configfs-tsm outblob ABI.
_OUTBLOB_ERRNO_HINTS: Final = {
    errno.EIO: "the host's quote generation service reported a failure",
    errno.ETIMEDOUT: "the host's quote generation service did not answer in time",
    errno.EBUSY: "an earlier quote request is still in flight",
    errno.EFBIG: "the report exceeds the kernel's configfs-tsm size limit",
    errno.EINVAL: "the kernel has no valid 64-byte inblob for this entry",
}


def _checked_quote(outblob: bytes, report_data: bytes) -> bytes:
    if not outblob:
        raise TeeError("configfs-tsm returned an empty outblob", code="tsm_outblob_empty")
    try:
        quote = parse_quote(outblob)
    except QuoteFormatError as exc:
        hint = (
            "; quotes over 8 KiB are DICE-based CWTs, which cllm does not support"
            if len(outblob) > _CWT_QUOTE_SIZE
            else ""
        )
        raise TeeError(
            f"the outblob ({len(outblob)} bytes) is not a DCAP quote: {exc}{hint}",
            code="tsm_outblob_malformed",
        ) from exc
    if quote.header.tee_type != layout.TEE_TYPE_TDX or not quote.is_tdx:
        raise TeeError(
            f"the outblob is not a TDX quote (TEE type {quote.header.tee_type:#x})",
            code="tsm_report_mismatch",
        )
    if quote.td_report.report_data != report_data:
        raise TeeError(
            "the quote's REPORTDATA is not the 64 bytes written to inblob",
            code="tsm_report_mismatch",
        )
    if quote.trailing_bytes:
        _log.warning("dropping %d unsigned bytes after the quote", quote.trailing_bytes)
        return outblob[: quote.length]
    return outblob


def _exact(value: bytes, size: int, what: str) -> bytes:
    value = bytes(value)
    if len(value) != size:
        raise ValueError(f"{what} must be exactly {size} bytes, got {len(value)}")
    return value


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
