"""Minimal DER reader and writer for the PCK certificate's SGX extension (single-byte tags only).

The writer is the reader's inverse for what the extension uses: definite minimal lengths,
minimal two's-complement INTEGERs, OIDs in base 128.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cllm.errors import QuoteFormatError

__all__ = [
    "Tlv",
    "decode_oid",
    "encode_integer",
    "encode_oid",
    "encode_sequence",
    "encode_tlv",
    "read_all",
]

TAG_BOOLEAN: Final = 0x01
TAG_INTEGER: Final = 0x02
TAG_OCTET_STRING: Final = 0x04
TAG_OID: Final = 0x06
TAG_ENUMERATED: Final = 0x0A
TAG_SEQUENCE: Final = 0x30

_CODE = "pck_extension_malformed"


@dataclass(frozen=True, slots=True)
class Tlv:
    tag: int
    value: bytes
    offset: int  # of the tag byte, relative to the outermost input


def read_all(data: bytes, base: int = 0) -> list[Tlv]:
    """Split ``data`` into consecutive TLVs; the last one must end exactly at the end."""
    items: list[Tlv] = []
    pos = 0
    while pos < len(data):
        start = pos
        if len(data) - pos < 2:
            raise QuoteFormatError("truncated DER header", offset=base + pos, code=_CODE)
        tag = data[pos]
        if tag & 0x1F == 0x1F:
            raise QuoteFormatError("multi-byte DER tag", offset=base + pos, code=_CODE)
        first = data[pos + 1]
        pos += 2
        if first < 0x80:
            length = first
        else:
            n = first & 0x7F
            if n == 0 or n > 4 or len(data) - pos < n:
                raise QuoteFormatError("bad DER length", offset=base + start + 1, code=_CODE)
            length = int.from_bytes(data[pos : pos + n], "big")
            pos += n
        if len(data) - pos < length:
            raise QuoteFormatError("DER value overruns its parent", offset=base + pos, code=_CODE)
        items.append(Tlv(tag=tag, value=data[pos : pos + length], offset=base + start))
        pos += length
    return items


def decode_oid(tlv: Tlv) -> str:
    if tlv.tag != TAG_OID or not tlv.value or tlv.value[-1] & 0x80:
        raise QuoteFormatError("expected an OBJECT IDENTIFIER", offset=tlv.offset, code=_CODE)
    arcs: list[int] = []
    acc = 0
    for byte in tlv.value:
        acc = (acc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(acc)
            acc = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def encode_tlv(tag: int, value: bytes) -> bytes:
    """One TLV with a definite, minimal length (the inverse of ``read_all`` for one item)."""
    size = len(value)
    if size < 0x80:
        return bytes((tag, size)) + value
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(raw))) + raw + value


def encode_integer(value: int, tag: int = TAG_INTEGER) -> bytes:
    if value < 0:
        raise ValueError("only non-negative INTEGERs are needed here")
    # Minimal two's complement: a leading zero byte exactly when the top bit would be set.
    return encode_tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def encode_oid(dotted: str) -> bytes:
    first, second, *rest = (int(arc) for arc in dotted.split("."))
    body = bytearray()
    for arc in (40 * first + second, *rest):
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return encode_tlv(TAG_OID, bytes(body))


def encode_sequence(*items: bytes) -> bytes:
    return encode_tlv(TAG_SEQUENCE, b"".join(items))
