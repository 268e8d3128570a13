"""The SPDM report parser on real reports: exact fields, round trip, strictness, truncation,
and a deterministic mutation fuzz of 100,000+ inputs (typed errors only)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from cllm.errors import GpuEvidenceFormatError
from cllm.gpu import MeasurementBlock, build_report, parse_report
from cllm.gpu._report import OpaqueField, encode_opaque, encode_report, parse_opaque
from gpu_vectors import doc, params, read

PARSE_CODES = {
    "gpu_report_malformed",
    "gpu_report_truncated",
    "gpu_report_trailing_bytes",
    "gpu_opaque_malformed",
    "gpu_opaque_unsupported",
}


@pytest.mark.parametrize("case", params(doc()["evidence"]))
def test_corpus_report_layout(case: dict[str, Any]) -> None:
    data = read(case["report"])
    assert len(data) == case["length"]
    allow = case["trailing_bytes"] > 0
    report = parse_report(data, allow_trailing_zeros=allow)
    assert report.trailing_bytes == case["trailing_bytes"]
    assert report.request_nonce.hex() == case["expected_nonce"]
    assert report.responder_nonce.hex() == case["response_nonce"]
    assert len(report.blocks) == case["measurement_blocks"]
    assert len(report.opaque_raw) == case["opaque_length"]
    assert report.signature_offset == case["signature_offset"]
    assert report.opaque.driver_version == case["claims"]["driver_version"]
    assert report.opaque.vbios_version == case["claims"]["vbios_version"]
    assert encode_report(report) == data
    assert parse_report(encode_report(report), allow_trailing_zeros=allow) == report


def test_trailing_byte_refused_by_default() -> None:
    data = read("reports/d414ec6b6ec1fa0e.bin")
    with pytest.raises(GpuEvidenceFormatError) as caught:
        parse_report(data)
    assert caught.value.code == "gpu_report_trailing_bytes"
    assert caught.value.offset == len(data) - 1
    # Tolerance covers zero bytes only.
    with pytest.raises(GpuEvidenceFormatError) as caught:
        parse_report(data[:-1] + b"\x01", allow_trailing_zeros=True)
    assert caught.value.code == "gpu_report_trailing_bytes"


@pytest.mark.parametrize("case", params(doc()["parser_only"], key="file"))
def test_nvdaod_opaque(case: dict[str, Any]) -> None:
    report = parse_report(read(case["file"]))
    assert report.opaque.nvdaod_version == tuple(case["nvdaod_version"])
    assert report.opaque.driver_version == case["driver_version"]
    fields = report.opaque.fields
    assert all(f.value_type is not None for f in fields)
    assert encode_opaque(fields, nvdaod_version=report.opaque.nvdaod_version) == report.opaque_raw


def test_nvdaod_newer_major_refused() -> None:
    raw = encode_opaque([OpaqueField(3, b"620.12\0", 0x86)], nvdaod_version=(3, 0, 0, 0))
    with pytest.raises(GpuEvidenceFormatError) as caught:
        parse_opaque(raw)
    assert caught.value.code == "gpu_opaque_unsupported"


def test_duplicate_and_badly_sized_opaque_fields_refused() -> None:
    dup = encode_opaque([OpaqueField(3, b"1.0\0"), OpaqueField(3, b"2.0\0")])
    fwid = encode_opaque([OpaqueField(20, bytes(47))])
    text = encode_opaque([OpaqueField(17, b"G5\x0120\0")])
    for raw in (dup, fwid, text):
        with pytest.raises(GpuEvidenceFormatError) as caught:
            parse_opaque(raw)
        assert caught.value.code == "gpu_opaque_malformed"


def _sample() -> bytes:
    blocks = [MeasurementBlock(i, 1, bytes([i]) * 48) for i in range(1, 65)]
    opaque = encode_opaque(
        [OpaqueField(3, b"570.1\0"), OpaqueField(4, (0x180).to_bytes(8, "little"))]
    )
    return build_report(
        request_nonce=bytes(range(32)),
        blocks=blocks,
        responder_nonce=bytes(32),
        opaque=opaque,
        sign=lambda data: b"\x5a" * 96,
    )


def test_built_report_round_trips() -> None:
    data = _sample()
    report = parse_report(data)
    assert report.is_gsp and report.opaque.driver_version == "570.1"
    assert report.signed_data == data[:-96]
    assert encode_report(report) == data


def test_every_truncation_is_a_typed_error() -> None:
    data = read("reports/c438e7e714c05a9b.bin")
    for cut in range(len(data)):
        with pytest.raises(GpuEvidenceFormatError) as caught:
            parse_report(data[:cut])
        assert caught.value.code in PARSE_CODES
        assert 0 <= caught.value.offset <= len(data)


def _seeds() -> list[bytes]:
    seeds = [_sample()]
    corpus = doc()
    if corpus["evidence"]:
        seeds += [read(case["report"]) for case in corpus["evidence"]]
        seeds += [read(case["file"]) for case in corpus["parser_only"]]
    return seeds


def _mutate(rng: random.Random, data: bytearray) -> bytes:
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        if kind == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == 1 and data:
            data[rng.randrange(len(data))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
        elif kind == 2 and len(data) > 3:
            at = rng.randrange(len(data) - 2)
            data[at : at + 2] = rng.choice((0, 1, 48, 0x3FF, 0x400, 0xFFFF)).to_bytes(2, "little")
        elif kind == 3:
            del data[rng.randrange(len(data) + 1) :]
        else:
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


def test_fuzz_parser_typed_errors_only() -> None:
    """100,000 mutated reports (fixed seed): each parses or raises GpuEvidenceFormatError."""
    rng = random.Random(16)
    seeds = _seeds()
    parsed = 0
    for _ in range(100_000):
        data = _mutate(rng, bytearray(rng.choice(seeds)))
        try:
            report = parse_report(data, allow_trailing_zeros=rng.random() < 0.5)
        except GpuEvidenceFormatError as exc:
            assert exc.code in PARSE_CODES
            continue
        parsed += 1
        assert encode_report(report) == data
    assert parsed > 1000  # the loop reaches past the header checks
