"""ACPI CCEL table and TCG PC Client crypto-agile event log: parse, replay, encode.

The firmware of a TD (TDVF / OVMF) measures the boot chain into RTMR0..RTMR2 and records every
measurement in a log area it describes with the ACPI CCEL table ("Confidential Computing Event
Log", UEFI 2.10 / ACPI 6.5 section 5.2.34). The log uses the TCG PC Client crypto-agile format:

* one ``TCG_PCR_EVENT`` (SHA-1 layout) whose event is the "Spec ID Event03" structure declaring
  the hash algorithms and their digest sizes;
* then ``TCG_PCR_EVENT2`` records, each with a digest per declared algorithm;
* then unused log area: all 0xFF (as TDVF initialises it) or all zero.

CC measurement-register index 0 is MRTD and 1..4 are RTMR0..RTMR3. Replay extends each RTMR with
the SHA-384 digest of its events in log order, from 48 zero bytes, skipping ``EV_NO_ACTION``.

Every read is bounds-checked before it happens, every loop consumes input or a bounded count, so
any input parses or raises ``EventLogError`` (with a stable ``code`` and the byte offset in the
message) in time linear in its size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from cllm.errors import EventLogError
from cllm.measure._registers import Rtmrs, replay_digests
from cllm.measure._rtmr import RTMR_COUNT, RTMR_SIZE

__all__ = [
    "CC_TYPE_TDX",
    "EV_NO_ACTION",
    "TPM_ALG_SHA384",
    "CcelTable",
    "SpecIdEvent",
    "TcgEvent",
    "TcgEventLog",
    "build_ccel",
    "parse_ccel",
    "parse_ccel_table",
    "parse_tcg_event_log",
    "replay_ccel",
]

# --- ACPI table header (ACPI 6.5 section 5.2.6), offsets from the table start ---------------
ACPI_SIGNATURE: Final = 0  # 4 bytes
ACPI_LENGTH: Final = 4  # u32, whole table including the header
ACPI_REVISION: Final = 8  # u8
ACPI_CHECKSUM: Final = 9  # u8, makes the byte sum of the whole table 0 mod 256
ACPI_OEM_ID: Final = 10  # 6 bytes
ACPI_OEM_TABLE_ID: Final = 16  # 8 bytes
ACPI_OEM_REVISION: Final = 24  # u32
ACPI_CREATOR_ID: Final = 28  # 4 bytes
ACPI_CREATOR_REVISION: Final = 32  # u32
ACPI_HEADER_SIZE: Final = 36

# --- CCEL body (ACPI 6.5 section 5.2.34) ------------------------------------------------------
CCEL_SIGNATURE: Final = b"CCEL"
CCEL_REVISION: Final = 1
CCEL_CC_TYPE: Final = 36  # u8
CCEL_CC_SUBTYPE: Final = 37  # u8
CCEL_RESERVED: Final = 38  # u16
CCEL_LAML: Final = 40  # u64, log area minimum length
CCEL_LASA: Final = 48  # u64, log area start address (guest physical)
CCEL_TABLE_SIZE: Final = 56
CC_TYPE_TDX: Final = 2

# --- TCG PC Client Platform Firmware Profile, crypto-agile log --------------------------------
EV_NO_ACTION: Final = 0x00000003
TPM_ALG_SHA1: Final = 0x0004
TPM_ALG_SHA256: Final = 0x000B
TPM_ALG_SHA384: Final = 0x000C
TPM_ALG_SHA512: Final = 0x000D
TPM_ALG_SM3_256: Final = 0x0012
TPM_ALG_SHA3_256: Final = 0x0027
TPM_ALG_SHA3_384: Final = 0x0028
TPM_ALG_SHA3_512: Final = 0x0029
# Registered hash algorithms must declare their real digest size: a header claiming a 32-byte
# SHA-384 would otherwise misalign every record after it, or feed a short digest to replay.
KNOWN_DIGEST_SIZES: Final[Mapping[int, int]] = {
    TPM_ALG_SHA1: 20,
    TPM_ALG_SHA256: 32,
    TPM_ALG_SHA384: 48,
    TPM_ALG_SHA512: 64,
    TPM_ALG_SM3_256: 32,
    TPM_ALG_SHA3_256: 32,
    TPM_ALG_SHA3_384: 48,
    TPM_ALG_SHA3_512: 64,
}

# TCG_PCR_EVENT (the first record), offsets from the record start
PCR_EVENT_PCR_INDEX: Final = 0  # u32
PCR_EVENT_TYPE: Final = 4  # u32, EV_NO_ACTION for the Spec ID event
PCR_EVENT_DIGEST: Final = 8  # 20 bytes, SHA-1 layout
PCR_EVENT_SHA1_SIZE: Final = 20
PCR_EVENT_SIZE: Final = 28  # u32
PCR_EVENT_DATA: Final = 32

# TCG_EfiSpecIDEventStruct, offsets from the start of the event data
SPEC_ID_SIGNATURE: Final = 0  # 16 bytes
SPEC_ID_PLATFORM_CLASS: Final = 16  # u32
SPEC_ID_VERSION_MINOR: Final = 20  # u8
SPEC_ID_VERSION_MAJOR: Final = 21  # u8
SPEC_ID_ERRATA: Final = 22  # u8
SPEC_ID_UINTN_SIZE: Final = 23  # u8
SPEC_ID_NUM_ALGORITHMS: Final = 24  # u32
SPEC_ID_DIGEST_SIZES: Final = 28  # {u16 algorithm id, u16 digest size} x number
SPEC_ID_SIGNATURE_03: Final = b"Spec ID Event03\x00"

# MR index of the CC event log: 0 = MRTD (built by the TDX module, never extended), 1..4 = RTMRs.
MR_INDEX_MRTD: Final = 0
MR_INDEX_MAX: Final = RTMR_COUNT

# Caps. The algorithm count and digest size bound the work per record whatever the header says
# (64 bytes is the largest registered hash, SHA-512 / SHA3-512); the event cap bounds the memory
# the parsed log holds: TDVF writes a few dozen events, a multi-megabyte log of tiny records is
# not a firmware log.
MAX_ALGORITHMS: Final = 16
MAX_DIGEST_SIZE: Final = 64
MAX_EVENTS: Final = 65_536

_PADDING_BYTES: Final = (0xFF, 0x00)
_DEFAULT_LAML: Final = 64 * 1024


def _fail(reason: str, offset: int, code: str) -> EventLogError:
    return EventLogError(f"{reason} (at offset {offset})", code=code)


class _Reader:
    """Sequential little-endian reader over ``data[:end]`` that fails with the offset."""

    __slots__ = ("_data", "_end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self._data = data
        self._end = len(data) if end is None else end
        self.pos = pos

    @property
    def remaining(self) -> int:
        return self._end - self.pos

    def take(self, size: int, what: str) -> bytes:
        if size > self.remaining:
            raise _fail(
                f"truncated {what}: needs {size} bytes, {self.remaining} left",
                self.pos,
                "eventlog_truncated",
            )
        chunk = self._data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "little")

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "little")

    def u64(self, what: str) -> int:
        return int.from_bytes(self.take(8, what), "little")


# ---------------------------------------------------------------------------------------------
# Model


@dataclass(frozen=True, slots=True)
class CcelTable:
    """The ACPI CCEL table (revision 1, 56 bytes)."""

    revision: int
    checksum: int
    oem_id: bytes
    oem_table_id: bytes
    oem_revision: int
    creator_id: bytes
    creator_revision: int
    cc_type: int
    cc_subtype: int
    laml: int
    lasa: int


@dataclass(frozen=True, slots=True)
class SpecIdEvent:
    """The "Spec ID Event03" structure: which digests every later record carries."""

    platform_class: int
    spec_version_major: int
    spec_version_minor: int
    spec_errata: int
    uintn_size: int
    # algorithm id -> digest size, in declared order (the order records are expected to use)
    digest_sizes: Mapping[int, int] = field(hash=False)
    vendor_info: bytes


@dataclass(frozen=True, slots=True)
class TcgEvent:
    """One event record. ``offset`` is where it starts in the log data (-1 when built in memory);
    it is provenance, not content, so equality ignores it."""

    mr_index: int
    event_type: int
    digests: Mapping[int, bytes] = field(hash=False)  # algorithm id -> digest, in record order
    data: bytes
    offset: int = field(default=-1, compare=False)

    @property
    def rtmr_index(self) -> int | None:
        """The RTMR this event extends (MR index - 1), or None for MR index 0 (MRTD)."""
        return self.mr_index - 1 if self.mr_index > MR_INDEX_MRTD else None

    @property
    def sha384(self) -> bytes | None:
        return self.digests.get(TPM_ALG_SHA384)

    @classmethod
    def for_rtmr(
        cls, rtmr_index: int, event_type: int, data: bytes, *, digest: bytes | None = None
    ) -> TcgEvent:
        """An event for RTMR ``rtmr_index``; the digest defaults to SHA-384 of ``data``.

        (Firmware does not always hash the event data itself, e.g. a PE image's event holds its
        device path and the digest is the Authenticode hash, hence ``digest``.)
        """
        if not 0 <= rtmr_index < RTMR_COUNT:
            raise ValueError(f"RTMR index {rtmr_index} out of range 0..{RTMR_COUNT - 1}")
        value = hashlib.sha384(data).digest() if digest is None else digest
        return cls(rtmr_index + 1, event_type, {TPM_ALG_SHA384: value}, bytes(data))


@dataclass(frozen=True, slots=True)
class TcgEventLog:
    """A parsed crypto-agile log: the Spec ID header record and the TCG_PCR_EVENT2 records."""

    header: TcgEvent  # the TCG_PCR_EVENT; its one digest is the 20-byte SHA-1 field
    spec_id: SpecIdEvent
    events: tuple[TcgEvent, ...]
    end: int  # offset just past the last record: padding or the end of the log area follows

    def replay(self) -> Rtmrs:
        """RTMR0..RTMR3 from the SHA-384 digests, skipping EV_NO_ACTION and MRTD (MR 0) events.

        Raises ``EventLogError`` (``eventlog_missing_sha384``) when a replayed event carries no
        SHA-384 digest: silently skipping it would replay a register the TD never had.
        """
        return replay_digests(self._measurements())

    def event_counts(self) -> tuple[int, int, int, int]:
        """How many events replay extends into each RTMR."""
        counts = [0] * RTMR_COUNT
        for event in self.events:
            if event.event_type != EV_NO_ACTION and event.rtmr_index is not None:
                counts[event.rtmr_index] += 1
        return (counts[0], counts[1], counts[2], counts[3])

    def _measurements(self) -> Iterable[tuple[int, bytes]]:
        for event in self.events:
            if event.event_type == EV_NO_ACTION or event.rtmr_index is None:
                continue
            digest = event.sha384
            if digest is None:
                raise _fail(
                    f"event of type {event.event_type:#x} for MR {event.mr_index} has no SHA-384 "
                    "digest",
                    event.offset,
                    "eventlog_missing_sha384",
                )
            yield event.rtmr_index, digest


# ---------------------------------------------------------------------------------------------
# CCEL table


def parse_ccel_table(table: bytes) -> CcelTable:
    """Parse and check the ACPI CCEL table: signature, length, checksum, CC type TDX.

    A checksum mismatch is an error: the table is small and firmware always sets it, so a bad
    sum means corruption or an edited table, and LAML (which bounds the log) comes from it.
    """
    table = bytes(table)
    if len(table) < ACPI_HEADER_SIZE:
        raise _fail(
            f"truncated ACPI header: needs {ACPI_HEADER_SIZE} bytes, {len(table)} given",
            0,
            "eventlog_truncated",
        )
    if table[ACPI_SIGNATURE : ACPI_SIGNATURE + 4] != CCEL_SIGNATURE:
        raise _fail(
            f"ACPI signature {table[:4]!r} is not {CCEL_SIGNATURE!r}",
            ACPI_SIGNATURE,
            "ccel_bad_signature",
        )
    reader = _Reader(table, ACPI_LENGTH)
    length = reader.u32("table length")
    if length < CCEL_TABLE_SIZE:
        raise _fail(
            f"table length {length} is shorter than a CCEL table ({CCEL_TABLE_SIZE})",
            ACPI_LENGTH,
            "ccel_bad_length",
        )
    if length != len(table):
        raise _fail(
            f"table length field says {length} bytes, {len(table)} given",
            ACPI_LENGTH,
            "ccel_bad_length",
        )
    revision = reader.u8("revision")
    checksum = reader.u8("checksum")
    if sum(table) % 256 != 0:
        raise _fail(
            f"checksum byte {checksum:#04x} does not make the table sum to zero "
            f"(sum is {sum(table) % 256:#04x})",
            ACPI_CHECKSUM,
            "ccel_bad_checksum",
        )
    oem_id = reader.take(6, "OEM ID")
    oem_table_id = reader.take(8, "OEM table ID")
    oem_revision = reader.u32("OEM revision")
    creator_id = reader.take(4, "creator ID")
    creator_revision = reader.u32("creator revision")
    cc_type = reader.u8("CC type")
    if cc_type != CC_TYPE_TDX:
        raise _fail(
            f"CC type {cc_type} is not TDX ({CC_TYPE_TDX})",
            CCEL_CC_TYPE,
            "ccel_unsupported_cc_type",
        )
    cc_subtype = reader.u8("CC subtype")
    reader.u16("reserved")  # reserved, ignored so a future use does not break parsing
    laml = reader.u64("LAML")
    lasa = reader.u64("LASA")
    return CcelTable(
        revision=revision,
        checksum=checksum,
        oem_id=oem_id,
        oem_table_id=oem_table_id,
        oem_revision=oem_revision,
        creator_id=creator_id,
        creator_revision=creator_revision,
        cc_type=cc_type,
        cc_subtype=cc_subtype,
        laml=laml,
        lasa=lasa,
    )


# ---------------------------------------------------------------------------------------------
# Event log


def _parse_spec_id(data: bytes, base: int) -> SpecIdEvent:
    """Parse the Spec ID structure ``data`` (the header's event data, found at ``base``)."""
    reader = _Reader(data)

    def fail(reason: str, offset: int) -> EventLogError:
        return _fail(reason, base + offset, "eventlog_bad_spec_id")

    signature = data[SPEC_ID_SIGNATURE : SPEC_ID_SIGNATURE + 16]
    if signature != SPEC_ID_SIGNATURE_03:
        raise _fail(
            f"first record is not a crypto-agile Spec ID Event03 header (signature {signature!r})",
            base + SPEC_ID_SIGNATURE,
            "eventlog_not_crypto_agile",
        )
    reader.pos = SPEC_ID_PLATFORM_CLASS
    try:
        platform_class = reader.u32("platform class")
        minor = reader.u8("spec version minor")
        major = reader.u8("spec version major")
        errata = reader.u8("spec errata")
        uintn_size = reader.u8("uintn size")
        count = reader.u32("number of algorithms")
        if not 1 <= count <= MAX_ALGORITHMS:
            raise fail(
                f"{count} algorithms declared (1..{MAX_ALGORITHMS} supported)",
                SPEC_ID_NUM_ALGORITHMS,
            )
        sizes: dict[int, int] = {}
        for _ in range(count):
            entry = reader.pos
            alg = reader.u16("algorithm id")
            size = reader.u16("digest size")
            if alg in sizes:
                raise fail(f"algorithm {alg:#06x} declared twice", entry)
            if not 1 <= size <= MAX_DIGEST_SIZE:
                raise fail(
                    f"algorithm {alg:#06x} digest size {size} not in 1..{MAX_DIGEST_SIZE}",
                    entry + 2,
                )
            known = KNOWN_DIGEST_SIZES.get(alg)
            if known is not None and size != known:
                raise fail(f"algorithm {alg:#06x} declared {size} bytes, it has {known}", entry)
            sizes[alg] = size
        vendor_info = reader.take(reader.u8("vendor info size"), "vendor info")
    except EventLogError as exc:
        if exc.code != "eventlog_truncated":
            raise
        # The structure overran the header's own event size: report it as a bad header.
        raise fail(f"Spec ID structure longer than its {len(data)}-byte event", reader.pos) from exc
    if reader.remaining:
        raise fail(f"{reader.remaining} bytes after the Spec ID structure", reader.pos)
    return SpecIdEvent(
        platform_class=platform_class,
        spec_version_major=major,
        spec_version_minor=minor,
        spec_errata=errata,
        uintn_size=uintn_size,
        digest_sizes=sizes,
        vendor_info=vendor_info,
    )


def _parse_header(reader: _Reader) -> tuple[TcgEvent, SpecIdEvent]:
    start = reader.pos
    pcr_index = reader.u32("Spec ID header PCR index")
    event_type = reader.u32("Spec ID header event type")
    if event_type != EV_NO_ACTION:
        raise _fail(
            f"first record has event type {event_type:#x}, the Spec ID header is EV_NO_ACTION",
            start + PCR_EVENT_TYPE,
            "eventlog_not_crypto_agile",
        )
    sha1 = reader.take(PCR_EVENT_SHA1_SIZE, "Spec ID header digest")
    size = reader.u32("Spec ID header event size")
    data_offset = reader.pos
    data = reader.take(size, "Spec ID header event")
    header = TcgEvent(pcr_index, event_type, {TPM_ALG_SHA1: sha1}, data, start)
    return header, _parse_spec_id(data, data_offset)


def _parse_event2(reader: _Reader, spec_id: SpecIdEvent) -> TcgEvent:
    start = reader.pos
    mr_index = reader.u32("MR index")
    if mr_index > MR_INDEX_MAX:
        raise _fail(
            f"MR index {mr_index:#x} is not a TDX measurement register (0..{MR_INDEX_MAX})",
            start,
            "eventlog_bad_mr_index",
        )
    event_type = reader.u32("event type")
    count_offset = reader.pos
    count = reader.u32("digest count")
    if not 1 <= count <= len(spec_id.digest_sizes):
        raise _fail(
            f"digest count {count}: the Spec ID header declares "
            f"{len(spec_id.digest_sizes)} algorithm(s)",
            count_offset,
            "eventlog_bad_digest_count",
        )
    digests: dict[int, bytes] = {}
    for _ in range(count):
        alg_offset = reader.pos
        alg = reader.u16("digest algorithm")
        size = spec_id.digest_sizes.get(alg)
        if size is None:
            raise _fail(
                f"digest algorithm {alg:#06x} is not declared in the Spec ID header",
                alg_offset,
                "eventlog_unknown_algorithm",
            )
        if alg in digests:
            raise _fail(
                f"digest algorithm {alg:#06x} appears twice in one record",
                alg_offset,
                "eventlog_duplicate_digest",
            )
        digests[alg] = reader.take(size, f"digest {alg:#06x}")
    size = reader.u32("event size")
    data = reader.take(size, "event data")
    return TcgEvent(mr_index, event_type, digests, data, start)


def parse_tcg_event_log(data: bytes, *, laml: int | None = None) -> TcgEventLog:
    """Parse a TCG crypto-agile event log area.

    ``laml`` (the CCEL table's log area minimum length) bounds the log: bytes past it are not
    part of the log area and are ignored. Records end where the rest of the area is all 0xFF
    or all zero (no valid record looks like either: its digest count is at least 1 and its MR
    index at most 4), or at the end of the data.
    """
    data = bytes(data)
    if laml is not None:
        data = data[: max(laml, 0)]
    # Computed once so the end-of-log test at each record boundary is O(1): the log ends at a
    # boundary at or past the start of the trailing run of either padding byte.
    content_end = min(len(data.rstrip(bytes([pad]))) for pad in _PADDING_BYTES)
    reader = _Reader(data)
    header, spec_id = _parse_header(reader)
    events: list[TcgEvent] = []
    while reader.pos < content_end:
        if len(events) >= MAX_EVENTS:
            raise _fail(f"more than {MAX_EVENTS} events", reader.pos, "eventlog_too_many_events")
        # Each record consumes at least 19 bytes (checked reads), so the loop always advances.
        events.append(_parse_event2(reader, spec_id))
    return TcgEventLog(header=header, spec_id=spec_id, events=tuple(events), end=reader.pos)


def parse_ccel(table: bytes, data: bytes) -> tuple[CcelTable, TcgEventLog]:
    """Parse the CCEL table and the log area it describes.

    The table's LAML bounds the log: data past it is ignored, and shorter data (a log area
    handed over with its trailing padding trimmed) is accepted.
    """
    parsed = parse_ccel_table(table)
    return parsed, parse_tcg_event_log(data, laml=parsed.laml)


def replay_ccel(table: bytes, data: bytes) -> Rtmrs:
    """Replay RTMR0..RTMR3 from a CCEL table and its log area."""
    return parse_ccel(table, data)[1].replay()


# ---------------------------------------------------------------------------------------------
# Encoder (a simulated TD serves a synthetic firmware log with it)


def _spec_id_event03() -> bytes:
    return b"".join(
        (
            SPEC_ID_SIGNATURE_03,
            (0).to_bytes(4, "little"),  # platform class: client
            bytes((0, 2, 0)),  # spec version 2.0, errata 0 (what TDVF writes)
            bytes((2,)),  # UINTN is 64-bit
            (1).to_bytes(4, "little"),  # one algorithm: SHA-384, as TDX uses
            TPM_ALG_SHA384.to_bytes(2, "little"),
            RTMR_SIZE.to_bytes(2, "little"),
            bytes((0,)),  # no vendor info
        )
    )


def _encode_event2(event: TcgEvent) -> bytes:
    if not 0 <= event.mr_index <= MR_INDEX_MAX:
        raise ValueError(f"MR index {event.mr_index} out of range 0..{MR_INDEX_MAX}")
    if not 0 <= event.event_type <= 0xFFFFFFFF:
        raise ValueError(f"event type {event.event_type} is not a u32")
    digest = event.sha384
    if set(event.digests) != {TPM_ALG_SHA384} or digest is None or len(digest) != RTMR_SIZE:
        raise ValueError(
            "build_ccel writes SHA-384-only logs: each event needs exactly one "
            "48-byte SHA-384 digest"
        )
    return b"".join(
        (
            event.mr_index.to_bytes(4, "little"),
            event.event_type.to_bytes(4, "little"),
            (1).to_bytes(4, "little"),
            TPM_ALG_SHA384.to_bytes(2, "little"),
            digest,
            len(event.data).to_bytes(4, "little"),
            event.data,
        )
    )


def _acpi_text(value: bytes, size: int, what: str) -> bytes:
    if len(value) > size:
        raise ValueError(f"{what} is longer than {size} bytes")
    return value.ljust(size, b" ")


def build_ccel(
    events: Iterable[TcgEvent],
    *,
    laml: int | None = None,
    lasa: int = 0,
    padding: int = 0xFF,
    oem_id: bytes = b"CLLM",
    oem_table_id: bytes = b"CLLMSIM",
    oem_revision: int = 1,
    creator_id: bytes = b"CLLM",
    creator_revision: int = 1,
) -> tuple[bytes, bytes]:
    """Encode ``events`` as (CCEL table, log area), the two files a TD exposes.

    The log is a crypto-agile log declaring SHA-384 only, so every event needs exactly one
    SHA-384 digest. The log area is ``laml`` bytes (default: 64 KiB, or the log rounded up to
    4 KiB if larger) filled after the records with ``padding`` (0xFF as TDVF, or 0x00).
    Invalid arguments are programming errors and raise ``ValueError``.
    """
    if padding not in _PADDING_BYTES:
        raise ValueError("padding must be 0xFF or 0x00")
    header_event = _spec_id_event03()
    log = b"".join(
        (
            (0).to_bytes(4, "little"),  # PCR index 0, as the TCG PC Client profile specifies
            EV_NO_ACTION.to_bytes(4, "little"),
            bytes(PCR_EVENT_SHA1_SIZE),
            len(header_event).to_bytes(4, "little"),
            header_event,
            *(_encode_event2(event) for event in events),
        )
    )
    if laml is None:
        laml = max(_DEFAULT_LAML, -(-len(log) // 4096) * 4096)
    if laml < len(log):
        raise ValueError(f"LAML {laml} is smaller than the {len(log)}-byte log")
    if not 0 <= lasa < 2**64 or laml >= 2**64:
        raise ValueError("LASA and LAML are u64")
    table = bytearray(CCEL_TABLE_SIZE)
    table[ACPI_SIGNATURE : ACPI_SIGNATURE + 4] = CCEL_SIGNATURE
    table[ACPI_LENGTH : ACPI_LENGTH + 4] = CCEL_TABLE_SIZE.to_bytes(4, "little")
    table[ACPI_REVISION] = CCEL_REVISION
    table[ACPI_OEM_ID : ACPI_OEM_ID + 6] = _acpi_text(oem_id, 6, "OEM ID")
    table[ACPI_OEM_TABLE_ID : ACPI_OEM_TABLE_ID + 8] = _acpi_text(oem_table_id, 8, "OEM table ID")
    table[ACPI_OEM_REVISION : ACPI_OEM_REVISION + 4] = oem_revision.to_bytes(4, "little")
    table[ACPI_CREATOR_ID : ACPI_CREATOR_ID + 4] = _acpi_text(creator_id, 4, "creator ID")
    table[ACPI_CREATOR_REVISION : ACPI_CREATOR_REVISION + 4] = creator_revision.to_bytes(
        4, "little"
    )
    table[CCEL_CC_TYPE] = CC_TYPE_TDX
    table[CCEL_LAML : CCEL_LAML + 8] = laml.to_bytes(8, "little")
    table[CCEL_LASA : CCEL_LASA + 8] = lasa.to_bytes(8, "little")
    table[ACPI_CHECKSUM] = -sum(table) % 256
    return bytes(table), log + bytes([padding]) * (laml - len(log))
