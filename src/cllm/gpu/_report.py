"""GPU attestation report: parsed model, strict parser and its exact inverse, the encoder.

A report is the SPDM 1.1 GET_MEASUREMENTS request (37 bytes) followed by the signed
MEASUREMENTS response, as NVML returns it. Every read is bounds-checked first; any input either
parses or raises ``GpuEvidenceFormatError`` with a code and offset, in time linear in its size.

The parser validates every byte eagerly but builds little: a report is verified once per
attestation, so the measurement blocks of the common GSP shape and the opaque fields' objects
are only materialised when asked for (the pipeline reads a few values by type).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from cllm.errors import GpuEvidenceFormatError
from cllm.gpu import _layout as L

__all__ = [
    "GpuReport",
    "MeasurementBlock",
    "OpaqueData",
    "OpaqueField",
    "build_report",
    "encode_opaque",
    "encode_report",
    "parse_opaque",
    "parse_report",
]

# Known opaque fields whose value has one fixed size (checked while parsing).
_FIXED_SIZES: Final = {
    L.OPAQUE_GPU_INFO: 8,
    L.OPAQUE_VBIOS_VERSION: L.VBIOS_VERSION_SIZE,
    L.OPAQUE_NVDEC0_STATUS: 1,
    L.OPAQUE_MSRSCNT: 4 * L.GSP_BLOCKS,
    L.OPAQUE_FWID: L.DIGEST_SIZE,
    L.OPAQUE_PROTECTED_PCIE_STATUS: 1,
    L.OPAQUE_DATA_VERSION: 2,
    L.OPAQUE_FEATURE_FLAG: 2,
}
# Known opaque fields holding NUL-terminated (or NUL-padded) ASCII.
_TEXT_FIELDS: Final = frozenset(
    {
        L.OPAQUE_DRIVER_VERSION,
        L.OPAQUE_CHIP_SKU,
        L.OPAQUE_CHIP_SKU_MOD,
        L.OPAQUE_PROJECT,
        L.OPAQUE_PROJECT_SKU,
        L.OPAQUE_PROJECT_SKU_MOD,
        L.OPAQUE_CHIP_INFO,
    }
)
_PRINTABLE: Final = bytes(range(0x20, 0x7F))  # deleted by translate: what is left is not
_LEGACY_FIELD: Final = struct.Struct("<HH")  # type, length
_NVDAOD_FIELD: Final = struct.Struct("<HHH")  # type, value type, length
_BLOCK_HEADER: Final = struct.Struct("<BBHBH")  # index, spec, size; DMTF type, value size
_MAX_OPAQUE_LENGTH: Final = 1024  # DSP0274 1.1: OpaqueLength shall not exceed 1024
MAX_REPORT_SIZE: Final = 64 * 1024  # NVML's report buffer is 8 KiB


@dataclass(frozen=True, slots=True)
class MeasurementBlock:
    """One DMTF measurement block: ``index`` 1..239, DMTF value ``type`` and ``value``."""

    index: int
    type: int
    value: bytes

    @property
    def is_digest(self) -> bool:
        return not self.type & 0x80  # bit 7 set: raw bit stream


@dataclass(frozen=True, slots=True)
class OpaqueField:
    type: int
    value: bytes
    value_type: int | None = None  # NVDAOD entries only


class OpaqueData:
    """NVIDIA's opaque data: legacy TLVs, or the versioned ``NVDAOD`` format.

    Read-only: values by field type, in the order the report carries them (``parse_opaque``
    refuses repeated types, so a type names one value)."""

    __slots__ = ("_value_types", "_values", "nvdaod_version")

    def __init__(
        self,
        values: dict[int, bytes],
        *,
        value_types: dict[int, int] | None = None,
        nvdaod_version: tuple[int, int, int, int] | None = None,  # major, minor, patch, pad
    ) -> None:
        self._values = values
        self._value_types = value_types
        self.nvdaod_version = nvdaod_version

    @property
    def fields(self) -> tuple[OpaqueField, ...]:
        types = self._value_types
        return tuple(
            OpaqueField(t, v, None if types is None else types[t]) for t, v in self._values.items()
        )

    def __bool__(self) -> bool:
        return bool(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OpaqueData):
            return NotImplemented
        return self.fields == other.fields and self.nvdaod_version == other.nvdaod_version

    def __hash__(self) -> int:
        return hash((self.fields, self.nvdaod_version))

    def __repr__(self) -> str:
        return f"OpaqueData(fields={self.fields!r}, nvdaod_version={self.nvdaod_version!r})"

    def get(self, field_type: int) -> bytes | None:
        return self._values.get(field_type)

    def text(self, field_type: int) -> str | None:
        value = self._values.get(field_type)
        return None if value is None else value.rstrip(b"\0").decode("ascii")

    @property
    def driver_version(self) -> str | None:
        return self.text(L.OPAQUE_DRIVER_VERSION)

    @property
    def vbios_version(self) -> str | None:
        """As NVIDIA prints it: bytes 3.2.1.0.4 in upper-case hex, e.g. ``96.00.9F.00.01``."""
        raw = self._values.get(L.OPAQUE_VBIOS_VERSION)
        if raw is None:
            return None
        return f"{raw[3]:02X}.{raw[2]:02X}.{raw[1]:02X}.{raw[0]:02X}.{raw[4]:02X}"

    @property
    def gpu_info(self) -> int | None:
        raw = self._values.get(L.OPAQUE_GPU_INFO)
        return None if raw is None else int.from_bytes(raw, "little")

    @property
    def fwid(self) -> bytes | None:
        return self._values.get(L.OPAQUE_FWID)

    @property
    def nvdec0_status(self) -> int | None:
        raw = self._values.get(L.OPAQUE_NVDEC0_STATUS)
        return None if raw is None else raw[0]


@dataclass(frozen=True, slots=True)
class GpuReport:
    """A parsed report. ``signed_data`` is every byte before the signature; ``record`` the
    measurement record (``block_count`` blocks, validated)."""

    request_nonce: bytes
    slot_id: int
    record: bytes
    block_count: int
    responder_nonce: bytes
    opaque: OpaqueData
    opaque_raw: bytes
    signature: bytes
    signed_data: bytes
    signature_offset: int
    trailing_bytes: int
    is_gsp: bool  # GSP confidential-computing evidence: 64 SHA-384 digest blocks
    # Blocks of any shape but the GSP one, as parsed; the GSP shape is sliced on demand.
    other_blocks: tuple[MeasurementBlock, ...] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def length(self) -> int:
        """Declared length: through the end of the signature."""
        return self.signature_offset + L.SIGNATURE_SIZE

    @property
    def blocks(self) -> tuple[MeasurementBlock, ...]:
        if self.other_blocks is not None:
            return self.other_blocks
        digest, record = L.DMTF_TYPE_FIRMWARE_DIGEST, self.record
        return tuple(
            MeasurementBlock(i + 1, digest, record[i * _GSP_BLOCK + 7 : (i + 1) * _GSP_BLOCK])
            for i in range(L.GSP_BLOCKS)
        )

    def values(self) -> dict[int, bytes]:
        """Measurement values by index (what an appraisal compares)."""
        if self.other_blocks is not None:
            return {block.index: block.value for block in self.other_blocks}
        record = self.record
        return {
            i + 1: record[i * _GSP_BLOCK + 7 : (i + 1) * _GSP_BLOCK] for i in range(L.GSP_BLOCKS)
        }

    def block(self, index: int) -> MeasurementBlock | None:
        for item in self.blocks:
            if item.index == index:
                return item
        return None


def _fail(reason: str, offset: int, code: str = "gpu_report_malformed") -> GpuEvidenceFormatError:
    return GpuEvidenceFormatError(reason, offset=offset, code=code)


def _need(data: bytes, offset: int, size: int, what: str) -> None:
    if offset + size > len(data):
        raise _fail(
            f"truncated {what}: needs {size} bytes, {max(0, len(data) - offset)} left",
            offset,
            "gpu_report_truncated",
        )


def _expect(data: bytes, offset: int, expected: int, what: str) -> None:
    if data[offset] != expected:
        raise _fail(f"{what} is {data[offset]:#04x}, expected {expected:#04x}", offset)


def _le(data: bytes, offset: int, size: int) -> int:
    return int.from_bytes(data[offset : offset + size], "little")


_GSP_BLOCK: Final = L.BLOCK_HEADER_SIZE + L.DMTF_HEADER_SIZE + L.DIGEST_SIZE  # 55
_GSP_INDICES: Final = bytes(range(1, L.GSP_BLOCKS + 1))
# Every GSP block header after its index byte: DMTF, size 51, type 0x01, value size 48.
_GSP_COLUMNS: Final = tuple(
    (k, bytes([expected]) * L.GSP_BLOCKS)
    for k, expected in enumerate(
        [L.MEASUREMENT_SPEC_DMTF, 51, 0, L.DMTF_TYPE_FIRMWARE_DIGEST, 48, 0], start=1
    )
)


def _is_gsp_record(record: bytes) -> bool:
    """The one shape GSP reports have: 64 digests, indices 1..64, every header as above."""
    if len(record) != L.GSP_BLOCKS * _GSP_BLOCK or record[::_GSP_BLOCK] != _GSP_INDICES:
        return False
    return all(record[k::_GSP_BLOCK] == column for k, column in _GSP_COLUMNS)


def _parse_blocks(data: bytes, start: int, end: int, count: int) -> tuple[MeasurementBlock, ...]:
    blocks: list[MeasurementBlock] = []
    pos = start
    previous = 0
    header = L.BLOCK_HEADER_SIZE + L.DMTF_HEADER_SIZE
    while pos < end:
        if len(blocks) == count:
            raise _fail(f"measurement record holds more than {count} blocks", pos)
        if pos + header > end:
            raise _fail("measurement block header overruns the record", pos)
        index, spec, size, value_type, value_size = _BLOCK_HEADER.unpack_from(data, pos)
        if not previous < index <= L.MAX_BLOCK_INDEX:
            raise _fail(f"measurement index {index} out of order or out of range", pos)
        if spec != L.MEASUREMENT_SPEC_DMTF:
            raise _fail(f"measurement specification {spec:#04x} is not DMTF", pos + 1)
        if size != L.DMTF_HEADER_SIZE + value_size:
            raise _fail(f"measurement size {size} disagrees with value size {value_size}", pos + 2)
        value_start = pos + header
        value_end = value_start + value_size
        if value_end > end:
            raise _fail("measurement value overruns the record", pos + 5)
        if not value_type & 0x80 and value_size != L.DIGEST_SIZE:
            raise _fail(f"digest measurement of {value_size} bytes (SHA-384 is 48)", pos + 5)
        blocks.append(MeasurementBlock(index, value_type, data[value_start:value_end]))
        previous = index
        pos = value_end
    if len(blocks) != count:
        raise _fail(f"measurement record holds {len(blocks)} blocks, header says {count}", end)
    return tuple(blocks)


def parse_opaque(data: bytes, base: int = 0) -> OpaqueData:
    """Parse opaque data occupying exactly ``data``; offsets in errors are ``base +``."""
    versioned = data.startswith(L.NVDAOD_MAGIC)
    values: dict[int, bytes] = {}
    value_types: dict[int, int] | None = None
    version: tuple[int, int, int, int] | None = None
    pos = 0
    end = len(data)
    header = L.LEGACY_FIELD_HEADER
    if versioned:
        if end < L.NVDAOD_HEADER_SIZE:
            raise _fail("truncated NVDAOD header", base, "gpu_opaque_malformed")
        profile = _le(data, 6, 2)
        if profile != 0:
            raise _fail(f"NVDAOD profile {profile} is not 0", base + 6, "gpu_opaque_malformed")
        version = (data[8], data[9], data[10], data[11])
        if version[0] > L.NVDAOD_MAX_MAJOR:
            raise _fail(
                f"NVDAOD major version {version[0]} is newer than {L.NVDAOD_MAX_MAJOR}",
                base + 8,
                "gpu_opaque_unsupported",
            )
        pos = L.NVDAOD_HEADER_SIZE
        header = L.NVDAOD_FIELD_HEADER
        value_types = {}
    value_type = 0
    while pos < end:
        if pos + header > end:
            raise _fail(
                "opaque field header overruns the opaque data", base + pos, "gpu_opaque_malformed"
            )
        if value_types is None:
            field_type, size = _LEGACY_FIELD.unpack_from(data, pos)
        else:
            field_type, value_type, size = _NVDAOD_FIELD.unpack_from(data, pos)
        start = pos + header
        stop = start + size
        if stop > end:
            raise _fail(
                f"opaque field {field_type} overruns the opaque data",
                base + pos,
                "gpu_opaque_malformed",
            )
        if field_type in values:
            raise _fail(f"opaque field {field_type} repeated", base + pos, "gpu_opaque_malformed")
        value = data[start:stop]
        fixed = _FIXED_SIZES.get(field_type)
        if fixed is not None and size != fixed:
            raise _fail(
                f"opaque field {field_type} is {size} bytes, expected {fixed}",
                base + pos,
                "gpu_opaque_malformed",
            )
        if field_type == L.OPAQUE_SWITCH_PDI and size % 8:
            raise _fail(
                "switch PDI list is not a multiple of 8 bytes", base + pos, "gpu_opaque_malformed"
            )
        if field_type in _TEXT_FIELDS and value.rstrip(b"\0").translate(None, _PRINTABLE):
            raise _fail(
                f"opaque field {field_type} is not NUL-padded ASCII",
                base + pos,
                "gpu_opaque_malformed",
            )
        values[field_type] = value
        if value_types is not None:
            value_types[field_type] = value_type
        pos = stop
    return OpaqueData(values, value_types=value_types, nvdaod_version=version)


_REQUEST_HEADER: Final = bytes(
    [L.SPDM_VERSION_11, L.GET_MEASUREMENTS, L.PARAM1_SIGNATURE_REQUESTED, L.PARAM2_ALL_BLOCKS]
)
_RESPONSE_HEADER: Final = bytes([L.SPDM_VERSION_11, L.MEASUREMENTS, 0])


def _check_headers(data: bytes, slot_id: int) -> None:
    _expect(data, L.REQ_VERSION, L.SPDM_VERSION_11, "request SPDMVersion")
    _expect(data, L.REQ_CODE, L.GET_MEASUREMENTS, "request code")
    _expect(data, L.REQ_PARAM1, L.PARAM1_SIGNATURE_REQUESTED, "request Param1 (attributes)")
    _expect(data, L.REQ_PARAM2, L.PARAM2_ALL_BLOCKS, "request Param2 (operation)")
    if slot_id > 7:
        raise _fail(f"slot ID {slot_id} out of range", L.REQ_SLOT_ID)
    _expect(data, L.RSP_VERSION, L.SPDM_VERSION_11, "response SPDMVersion")
    _expect(data, L.RSP_CODE, L.MEASUREMENTS, "response code")
    _expect(data, L.RSP_PARAM1, 0, "response Param1")
    _expect(data, L.RSP_PARAM2, slot_id, "response Param2 (slot ID)")


def parse_report(
    data: bytes | bytearray | memoryview, *, allow_trailing_zeros: bool = False
) -> GpuReport:
    """Parse a report to its declared lengths.

    Bytes after the signature are refused (``gpu_report_trailing_bytes``) unless
    ``allow_trailing_zeros``, which tolerates zero bytes only (a real capture carries one).
    """
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError("report must be bytes")
    if len(data) > MAX_REPORT_SIZE:
        raise _fail(f"{len(data)} bytes, at most {MAX_REPORT_SIZE}", 0)
    _need(data, 0, L.RSP_RECORD, "request and response header")
    slot_id = data[L.REQ_SLOT_ID]
    # One comparison for the fixed header bytes; byte by byte only to say which one is wrong.
    if (
        data[: L.REQ_NONCE] != _REQUEST_HEADER
        or data[L.RSP_VERSION : L.RSP_PARAM2] != _RESPONSE_HEADER
        or slot_id > 7
        or data[L.RSP_PARAM2] != slot_id
    ):
        _check_headers(data, slot_id)
    count = data[L.RSP_NUMBER_OF_BLOCKS]
    if count == 0:
        raise _fail("response holds no measurement blocks", L.RSP_NUMBER_OF_BLOCKS)
    record_length = _le(data, L.RSP_RECORD_LENGTH, 3)
    _need(data, L.RSP_RECORD, record_length, "measurement record")
    record_end = L.RSP_RECORD + record_length
    record = data[L.RSP_RECORD : record_end]
    other_blocks: tuple[MeasurementBlock, ...] | None = None
    if count == L.GSP_BLOCKS and _is_gsp_record(record):
        is_gsp = True
    else:
        other_blocks = _parse_blocks(data, L.RSP_RECORD, record_end, count)
        is_gsp = len(other_blocks) == L.GSP_BLOCKS and all(
            b.type == L.DMTF_TYPE_FIRMWARE_DIGEST for b in other_blocks
        )
    _need(
        data, record_end, L.NONCE_SIZE + L.OPAQUE_LENGTH_SIZE, "responder nonce and opaque length"
    )
    responder_nonce = data[record_end : record_end + L.NONCE_SIZE]
    opaque_length_at = record_end + L.NONCE_SIZE
    opaque_length = _le(data, opaque_length_at, 2)
    if opaque_length > _MAX_OPAQUE_LENGTH:
        raise _fail(f"opaque length {opaque_length} exceeds 1024", opaque_length_at)
    opaque_at = opaque_length_at + L.OPAQUE_LENGTH_SIZE
    _need(data, opaque_at, opaque_length, "opaque data")
    opaque_raw = data[opaque_at : opaque_at + opaque_length]
    opaque = parse_opaque(opaque_raw, opaque_at)
    signature_at = opaque_at + opaque_length
    _need(data, signature_at, L.SIGNATURE_SIZE, "signature")
    end = signature_at + L.SIGNATURE_SIZE
    trailing = len(data) - end
    if trailing and not (allow_trailing_zeros and not any(data[end:])):
        raise _fail(f"{trailing} bytes after the signature", end, "gpu_report_trailing_bytes")
    return GpuReport(
        request_nonce=data[L.REQ_NONCE : L.REQ_NONCE + L.NONCE_SIZE],
        slot_id=slot_id,
        record=record,
        block_count=count,
        responder_nonce=responder_nonce,
        opaque=opaque,
        opaque_raw=opaque_raw,
        signature=data[signature_at:end],
        signed_data=data[:signature_at],
        signature_offset=signature_at,
        trailing_bytes=trailing,
        is_gsp=is_gsp,
        other_blocks=other_blocks,
    )


# -- encoders: the exact inverses ------------------------------------------------------------


def _u(value: int, size: int, what: str) -> bytes:
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(f"{what} {value} does not fit in {size} bytes")
    return value.to_bytes(size, "little")


def _sized(value: bytes, size: int, what: str) -> bytes:
    if len(value) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(value)}")
    return value


def encode_opaque(
    fields: Iterable[OpaqueField], *, nvdaod_version: tuple[int, int, int, int] | None = None
) -> bytes:
    out = bytearray()
    if nvdaod_version is not None:
        out += L.NVDAOD_MAGIC + _u(0, 2, "profile") + bytes(nvdaod_version)
    for item in fields:
        out += _u(item.type, 2, "opaque type")
        if nvdaod_version is not None:
            out += _u(item.value_type or 0, 2, "opaque value type")
        out += _u(len(item.value), 2, "opaque length") + item.value
    return bytes(out)


def _encode_unsigned(
    *,
    request_nonce: bytes,
    blocks: Iterable[MeasurementBlock],
    responder_nonce: bytes,
    opaque: bytes,
    slot_id: int = 0,
) -> bytes:
    blocks = tuple(blocks)
    record = bytearray()
    for block in blocks:
        size = L.DMTF_HEADER_SIZE + len(block.value)
        record += bytes([block.index, L.MEASUREMENT_SPEC_DMTF]) + _u(size, 2, "block size")
        record += bytes([block.type]) + _u(len(block.value), 2, "value size") + block.value
    request = bytes(
        [L.SPDM_VERSION_11, L.GET_MEASUREMENTS, L.PARAM1_SIGNATURE_REQUESTED, L.PARAM2_ALL_BLOCKS]
    )
    request += _sized(request_nonce, L.NONCE_SIZE, "request nonce") + _u(slot_id, 1, "slot ID")
    response = bytes([L.SPDM_VERSION_11, L.MEASUREMENTS, 0, slot_id])
    response += _u(len(blocks), 1, "block count") + _u(len(record), 3, "record length")
    response += bytes(record) + _sized(responder_nonce, L.NONCE_SIZE, "responder nonce")
    response += _u(len(opaque), 2, "opaque length") + opaque
    return request + response


def encode_report(report: GpuReport) -> bytes:
    """The report's bytes (trailing zero bytes included), from its parsed form."""
    unsigned = _encode_unsigned(
        request_nonce=report.request_nonce,
        blocks=report.blocks,
        responder_nonce=report.responder_nonce,
        opaque=report.opaque_raw,
        slot_id=report.slot_id,
    )
    return (
        unsigned
        + _sized(report.signature, L.SIGNATURE_SIZE, "signature")
        + bytes(report.trailing_bytes)
    )


def build_report(
    *,
    request_nonce: bytes,
    blocks: Iterable[MeasurementBlock],
    responder_nonce: bytes,
    opaque: bytes,
    sign: Callable[[bytes], bytes],
) -> bytes:
    """A new report; ``sign`` maps the signed bytes to a 96-byte raw r || s signature."""
    unsigned = _encode_unsigned(
        request_nonce=request_nonce, blocks=blocks, responder_nonce=responder_nonce, opaque=opaque
    )
    return unsigned + _sized(sign(unsigned), L.SIGNATURE_SIZE, "signature")
