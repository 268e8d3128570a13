"""CCEL table and TCG crypto-agile log, on logs built here (no corpus needed): round trip through
build_ccel, replay against an independent extend, every structural error with its code and
offset, truncation at every byte, padding variants, and a hypothesis fuzz."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cllm.errors import EventLogError
from cllm.measure import (
    EV_NO_ACTION,
    Rtmrs,
    TcgEvent,
    _ccel,
    build_ccel,
    parse_tcg_event_log,
    replay_ccel,
)
from cllm.measure._ccel import (
    CC_TYPE_TDX,
    TPM_ALG_SHA384,
    TcgEventLog,
    parse_ccel,
    parse_ccel_table,
)
from fuzzing import budget

SHA256 = 0x000B
SHA384 = TPM_ALG_SHA384
EV_SEPARATOR = 0x4
EV_EFI_ACTION = 0x80000007
HEADER_END = 32 + 33  # TCG_PCR_EVENT header + a one-algorithm Spec ID Event03


def _sha384(data: bytes) -> bytes:
    return hashlib.sha384(data).digest()


def _replay_by_hand(events: Sequence[tuple[int, bytes]]) -> list[bytes]:
    """Independent of cllm: RTMR = SHA-384(RTMR || digest) from zero."""
    registers = [bytes(48)] * 4
    for rtmr, digest in events:
        registers[rtmr] = _sha384(registers[rtmr] + digest)
    return registers


def _events() -> list[TcgEvent]:
    return [
        TcgEvent.for_rtmr(0, 0x8000000B, b"TdxTable"),
        TcgEvent.for_rtmr(0, EV_SEPARATOR, b"\x00\x00\x00\x00"),
        TcgEvent(1, EV_NO_ACTION, {SHA384: bytes(48)}, b"StartupLocality\x00\x00"),
        TcgEvent.for_rtmr(1, EV_EFI_ACTION, b"Calling EFI Application from Boot Option"),
        TcgEvent.for_rtmr(2, 0xD, b"grub_cmd linux /vmlinuz", digest=_sha384(b"other")),
        TcgEvent(0, 0x1, {SHA384: _sha384(b"mrtd")}, b"MRTD is not an RTMR"),
        TcgEvent.for_rtmr(3, 0x08000001, b""),
        TcgEvent.for_rtmr(1, EV_SEPARATOR, b"\x00\x00\x00\x00"),
    ]


def _expected(events: Sequence[TcgEvent]) -> list[bytes]:
    return _replay_by_hand(
        [
            (event.mr_index - 1, event.digests[SHA384])
            for event in events
            if event.event_type != EV_NO_ACTION and event.mr_index > 0
        ]
    )


# --- hand-built logs ----------------------------------------------------------------------------


def spec_id(
    algorithms: Sequence[tuple[int, int]] = ((SHA384, 48),),
    *,
    signature: bytes = b"Spec ID Event03\x00",
    count: int | None = None,
    vendor: bytes = b"",
    extra: bytes = b"",
) -> bytes:
    body = signature + struct.pack(
        "<IBBBBI", 0, 0, 2, 0, 2, len(algorithms) if count is None else count
    )
    body += b"".join(struct.pack("<HH", alg, size) for alg, size in algorithms)
    return body + bytes([len(vendor)]) + vendor + extra


def header(
    spec: bytes | None = None, *, event_type: int = EV_NO_ACTION, size: int | None = None
) -> bytes:
    spec = spec_id() if spec is None else spec
    return (
        struct.pack("<II", 1, event_type)
        + bytes(20)
        + struct.pack("<I", len(spec) if size is None else size)
        + spec
    )


def record(
    mr_index: int,
    event_type: int,
    digests: Sequence[tuple[int, bytes]],
    data: bytes,
    *,
    count: int | None = None,
    size: int | None = None,
) -> bytes:
    out = struct.pack("<III", mr_index, event_type, len(digests) if count is None else count)
    out += b"".join(struct.pack("<H", alg) + digest for alg, digest in digests)
    return out + struct.pack("<I", len(data) if size is None else size) + data


def sha384_record(mr_index: int, data: bytes = b"event") -> bytes:
    return record(mr_index, 0xD, [(SHA384, _sha384(data))], data)


def _error(data: bytes, code: str, **kwargs: int) -> EventLogError:
    with pytest.raises(EventLogError) as info:
        parse_tcg_event_log(data, **kwargs)
    assert info.value.code == code, str(info.value)
    return info.value


# --- round trip ---------------------------------------------------------------------------------


def test_build_ccel_round_trip() -> None:
    events = _events()
    table, data = build_ccel(events, lasa=0xBEDBF000)
    assert len(table) == 56
    assert table[:4] == b"CCEL"
    assert sum(table) % 256 == 0
    assert len(data) == 64 * 1024
    parsed_table, log = parse_ccel(table, data)
    assert parsed_table.cc_type == CC_TYPE_TDX
    assert parsed_table.laml == len(data)
    assert parsed_table.lasa == 0xBEDBF000
    assert parsed_table.revision == 1
    assert parsed_table.oem_id == b"CLLM  "
    assert list(log.events) == events
    assert dict(log.spec_id.digest_sizes) == {SHA384: 48}
    assert log.header.event_type == EV_NO_ACTION
    assert set(data[log.end :]) == {0xFF}
    # offsets point at each record's MR index
    for event in log.events:
        assert event.offset >= HEADER_END
        assert data[event.offset : event.offset + 4] == event.mr_index.to_bytes(4, "little")
    assert log.event_counts() == (2, 2, 1, 1)
    assert list(log.replay().as_tuple()) == _expected(events)
    assert replay_ccel(table, data) == log.replay()


def test_round_trip_is_byte_exact() -> None:
    events = _events()
    table, data = build_ccel(events, laml=4096)
    _, log = parse_ccel(table, data)
    assert build_ccel(log.events, laml=4096) == (table, data)


def test_empty_log_replays_to_zero() -> None:
    table, data = build_ccel([])
    _, log = parse_ccel(table, data)
    assert log.events == ()
    assert log.end == HEADER_END
    assert log.replay() == Rtmrs()
    assert log.replay().as_hex() == {f"rtmr{i}": "00" * 48 for i in range(4)}


@pytest.mark.parametrize("padding", [0xFF, 0x00])
def test_padding_variants(padding: int) -> None:
    events = _events()
    table, data = build_ccel(events, padding=padding)
    assert data[-1] == padding
    assert list(parse_ccel(table, data)[1].events) == events
    end = parse_tcg_event_log(data).end
    for laml in (end, end + 1, end + 3):  # no padding at all, then a little
        _, tight = build_ccel(events, laml=laml, padding=padding)
        assert len(tight) == laml
        assert list(parse_tcg_event_log(tight).events) == events


def test_event_ending_in_padding_bytes_is_kept() -> None:
    """Trailing 0x00 / 0xFF inside the last record's data are not mistaken for padding."""
    for tail in (b"\x00" * 8, b"\xff" * 8):
        events = [TcgEvent.for_rtmr(0, 1, b"x" + tail)]
        for padding in (0xFF, 0x00):
            _, data = build_ccel(events, padding=padding)
            assert list(parse_tcg_event_log(data).events) == events
            log = data[: HEADER_END + 12 + 2 + 48 + 4 + 9]
            assert list(parse_tcg_event_log(log).events) == events


def test_laml_bounds_the_log() -> None:
    events = _events()
    table, data = build_ccel(events, laml=4096)
    # Bytes past LAML are not log area: garbage there is ignored.
    _, log = parse_ccel(table, data + b"\x01garbage")
    assert list(log.events) == events
    # A log area handed over without its trailing padding still parses.
    _, log = parse_ccel(table, data[: log.end])
    assert list(log.events) == events
    # A LAML cutting into a record truncates it.
    _error(data, "eventlog_truncated", laml=log.end - 1)
    assert parse_tcg_event_log(data, laml=HEADER_END).events == ()


def test_garbage_after_padding_is_an_error() -> None:
    _, data = build_ccel(_events(), laml=4096)
    end = parse_tcg_event_log(data).end
    bad = bytearray(data)
    bad[end + 100] = 0x01
    error = _error(bytes(bad), "eventlog_bad_mr_index")
    assert f"at offset {end}" in str(error)
    # 0xFF padding then zero padding is neither all-0xFF nor all-zero
    mixed = data[:end] + b"\xff" * 8 + bytes(8)
    _error(mixed, "eventlog_bad_mr_index")


def test_truncation_at_every_byte() -> None:
    events = _events()
    _, data = build_ccel(events, laml=4096)
    log = data[: parse_tcg_event_log(data).end]
    starts = [event.offset for event in parse_tcg_event_log(log).events] + [len(log)]
    for cut in range(len(log)):
        prefix = log[:cut]
        whole = sum(1 for start in starts[1:] if start <= cut)  # records entirely before the cut
        try:
            parsed = parse_tcg_event_log(prefix)
        except EventLogError as exc:
            assert cut not in starts, f"cut at record boundary {cut} must parse"
            assert exc.code == "eventlog_truncated", str(exc)
            assert "at offset" in str(exc)
            continue
        assert cut >= HEADER_END
        assert list(parsed.events) == events[:whole]
        # Success off a boundary only when the cut-off record's bytes look like zero padding
        # (an MRTD record starts with four zero bytes): a reader cannot tell the two apart.
        rest = prefix[parsed.end :]
        assert cut in starts or set(rest) <= {0} or set(rest) <= {0xFF}


def test_replay_skips_no_action_and_mrtd() -> None:
    digest = _sha384(b"a")
    data = (
        header()
        + record(1, EV_NO_ACTION, [(SHA384, digest)], b"")
        + record(0, 1, [(SHA384, digest)], b"")
    )
    log = parse_tcg_event_log(data)
    assert len(log.events) == 2
    assert log.events[1].rtmr_index is None
    assert log.replay() == Rtmrs()
    assert log.event_counts() == (0, 0, 0, 0)


def test_rtmr3_events_replay() -> None:
    data = header() + sha384_record(4, b"app") + sha384_record(1, b"fw")
    rtmrs = parse_tcg_event_log(data).replay()
    assert rtmrs.rtmr3 == _replay_by_hand([(3, _sha384(b"app"))])[3]
    assert rtmrs.rtmr0 == _replay_by_hand([(0, _sha384(b"fw"))])[0]
    assert rtmrs[3] == rtmrs.rtmr3


def test_several_algorithms_replay_sha384() -> None:
    spec = spec_id([(SHA256, 32), (SHA384, 48), (0x1234, 20)])
    digests = [(SHA256, bytes(range(32))), (SHA384, _sha384(b"x")), (0x1234, b"\x07" * 20)]
    data = header(spec) + record(1, 1, digests, b"x") + record(2, 1, digests[1:2], b"y")
    log = parse_tcg_event_log(data)
    assert log.events[0].digests == dict(digests)
    assert list(log.events[0].digests) == [SHA256, SHA384, 0x1234]
    assert log.replay().rtmr0 == _replay_by_hand([(0, _sha384(b"x"))])[0]


def test_vendor_info_is_kept() -> None:
    log = parse_tcg_event_log(header(spec_id(vendor=b"vendor")))
    assert log.spec_id.vendor_info == b"vendor"
    assert log.spec_id.spec_version_major == 2
    assert log.spec_id.uintn_size == 2


# --- structural errors --------------------------------------------------------------------------


def test_missing_sha384_digest_fails_replay_not_parse() -> None:
    data = header(spec_id([(SHA256, 32)])) + record(1, 1, [(SHA256, bytes(32))], b"")
    log = parse_tcg_event_log(data)
    with pytest.raises(EventLogError) as info:
        log.replay()
    assert info.value.code == "eventlog_missing_sha384"
    assert f"at offset {HEADER_END}" in str(info.value)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "eventlog_truncated"),
        (b"\xff" * 4096, "eventlog_not_crypto_agile"),
        (bytes(4096), "eventlog_not_crypto_agile"),
        (header(event_type=1), "eventlog_not_crypto_agile"),
        (header(spec_id(signature=b"Spec ID Event00\x00")), "eventlog_not_crypto_agile"),
        (header(spec_id(signature=b"Spec ID Ev")), "eventlog_not_crypto_agile"),
        (header(spec_id([])), "eventlog_bad_spec_id"),
        (header(spec_id([(0x100 + i, 20) for i in range(17)])), "eventlog_bad_spec_id"),
        (header(spec_id(count=0xFFFFFFFF)), "eventlog_bad_spec_id"),
        (header(spec_id(count=2)), "eventlog_bad_spec_id"),
        (header(spec_id([(SHA384, 48), (SHA384, 48)])), "eventlog_bad_spec_id"),
        (header(spec_id([(SHA384, 32)])), "eventlog_bad_spec_id"),
        (header(spec_id([(0x1234, 0)])), "eventlog_bad_spec_id"),
        (header(spec_id([(0x1234, 65)])), "eventlog_bad_spec_id"),
        (header(spec_id(extra=b"\x00")), "eventlog_bad_spec_id"),
        (header(spec_id(vendor=b"abc")[:-1]), "eventlog_bad_spec_id"),
        (header(size=0xFFFFFFFF), "eventlog_truncated"),
        (header(size=20), "eventlog_bad_spec_id"),
        (header()[:-1], "eventlog_truncated"),
    ],
    ids=lambda value: None if isinstance(value, bytes) else value,
)
def test_bad_header(data: bytes, code: str) -> None:
    _error(data, code)


def test_bad_header_offsets() -> None:
    error = _error(header(spec_id([(SHA384, 32)])), "eventlog_bad_spec_id")
    assert "at offset 60" in str(error)  # 32 (TCG_PCR_EVENT) + 28 (first algorithm entry)
    error = _error(header(event_type=1), "eventlog_not_crypto_agile")
    assert "at offset 4" in str(error)


@pytest.mark.parametrize(
    ("body", "code", "offset"),
    [
        (record(5, 1, [(SHA384, bytes(48))], b""), "eventlog_bad_mr_index", 0),
        (record(0xFFFFFFFF, 1, [(SHA384, bytes(48))], b""), "eventlog_bad_mr_index", 0),
        (record(1, 1, [], b""), "eventlog_bad_digest_count", 8),
        (record(1, 1, [(SHA384, bytes(48))], b"", count=2), "eventlog_bad_digest_count", 8),
        (
            record(1, 1, [(SHA384, bytes(48))], b"", count=0xFFFFFFFF),
            "eventlog_bad_digest_count",
            8,
        ),
        (record(1, 1, [(SHA256, bytes(32))], b""), "eventlog_unknown_algorithm", 12),
        (record(1, 1, [(SHA384, bytes(48))], b"", size=0xFFFFFFFF), "eventlog_truncated", 66),
        (record(1, 1, [(SHA384, bytes(48))], b"abc", size=4), "eventlog_truncated", 66),
        (record(1, 1, [(SHA384, bytes(40))], b""), "eventlog_truncated", 14),
    ],
)
def test_bad_record(body: bytes, code: str, offset: int) -> None:
    data = header() + sha384_record(1) + body
    error = _error(data, code)
    start = len(header() + sha384_record(1))
    assert f"at offset {start + offset}" in str(error)


def test_duplicate_digest_in_record() -> None:
    spec = spec_id([(SHA256, 32), (SHA384, 48)])
    data = header(spec) + record(1, 1, [(SHA384, bytes(48)), (SHA384, bytes(48))], b"")
    _error(data, "eventlog_duplicate_digest")


def test_event_count_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ccel, "MAX_EVENTS", 3)
    data = header() + sha384_record(1) * 3
    assert len(parse_tcg_event_log(data).events) == 3
    _error(data + sha384_record(1), "eventlog_too_many_events")


# --- CCEL table ---------------------------------------------------------------------------------


def _fix_checksum(table: bytearray) -> bytes:
    table[9] = 0
    table[9] = -sum(table) % 256
    return bytes(table)


def _table_error(table: bytes, code: str) -> EventLogError:
    with pytest.raises(EventLogError) as info:
        parse_ccel_table(table)
    assert info.value.code == code, str(info.value)
    return info.value


def test_table_fields() -> None:
    table, _ = build_ccel([], laml=0x40000, lasa=0x1234, oem_id=b"INTEL", oem_table_id=b"EDK2")
    parsed = parse_ccel_table(table)
    assert parsed.oem_id == b"INTEL "
    assert parsed.oem_table_id == b"EDK2    "
    assert (parsed.laml, parsed.lasa, parsed.cc_subtype) == (0x40000, 0x1234, 0)
    assert parsed.checksum == table[9]


def test_table_checksum_mismatch_at_every_byte() -> None:
    table, _ = build_ccel([])
    for at in range(len(table)):
        if at in range(4, 8):  # the length: reported as a length error first
            continue
        bad = bytearray(table)
        bad[at] ^= 0x01
        code = "ccel_bad_signature" if at < 4 else "ccel_bad_checksum"
        error = _table_error(bytes(bad), code)
        if code == "ccel_bad_checksum":
            assert "at offset 9" in str(error)


def test_table_structure_errors() -> None:
    table, _ = build_ccel([])
    for cut in range(len(table)):
        with pytest.raises(EventLogError) as info:
            parse_ccel_table(table[:cut])
        assert info.value.code in {"eventlog_truncated", "ccel_bad_length", "ccel_bad_signature"}
    _table_error(table + b"\x00", "ccel_bad_length")
    _table_error(b"XSDT" + table[4:], "ccel_bad_signature")
    short = bytearray(table)
    short[4:8] = (44).to_bytes(4, "little")
    _table_error(_fix_checksum(short)[:44], "ccel_bad_length")
    sev = bytearray(table)
    sev[36] = 1
    error = _table_error(_fix_checksum(sev), "ccel_unsupported_cc_type")
    assert "at offset 36" in str(error)


def test_longer_table_revision_is_accepted() -> None:
    """A future revision may append fields: the checksum covers them, the v1 fields still parse."""
    table, _ = build_ccel([], laml=4096)
    longer = bytearray(table + b"\x00" * 8)
    longer[4:8] = (64).to_bytes(4, "little")
    assert parse_ccel_table(_fix_checksum(longer)).laml == 4096


# --- encoder argument checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    "events",
    [
        [TcgEvent(1, 1, {SHA256: bytes(32)}, b"")],
        [TcgEvent(1, 1, {SHA384: bytes(48), SHA256: bytes(32)}, b"")],
        [TcgEvent(1, 1, {SHA384: bytes(47)}, b"")],
        [TcgEvent(5, 1, {SHA384: bytes(48)}, b"")],
        [TcgEvent(1, 1 << 32, {SHA384: bytes(48)}, b"")],
    ],
)
def test_build_rejects_what_it_cannot_encode(events: list[TcgEvent]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - programming errors, any message
        build_ccel(events)


def test_build_argument_checks() -> None:
    with pytest.raises(ValueError, match="padding"):
        build_ccel([], padding=0x20)
    with pytest.raises(ValueError, match="LAML"):
        build_ccel(_events(), laml=100)
    with pytest.raises(ValueError, match="OEM ID"):
        build_ccel([], oem_id=b"TOO LONG")
    with pytest.raises(ValueError, match="RTMR index"):
        TcgEvent.for_rtmr(4, 1, b"")
    table, data = build_ccel([TcgEvent.for_rtmr(0, 1, b"x" * 70_000)])
    assert len(data) == 72 * 1024  # grown to fit, in 4 KiB steps
    assert parse_ccel_table(table).laml == len(data)


def test_event_equality_ignores_offset() -> None:
    event = TcgEvent.for_rtmr(0, 1, b"x")
    moved = TcgEvent(event.mr_index, event.event_type, dict(event.digests), event.data, 1234)
    assert moved == event
    assert hash(moved) == hash(event)


# --- fuzz ---------------------------------------------------------------------------------------


def _parse_all(table: bytes | None, data: bytes) -> TcgEventLog | None:
    try:
        log = parse_tcg_event_log(data) if table is None else parse_ccel(table, data)[1]
        log.replay()
        return log
    except EventLogError as exc:
        assert exc.code.startswith(("eventlog_", "ccel_"))
        return None


def _tight(events: list[TcgEvent], padding: int, extra: int) -> tuple[bytes, bytes]:
    """A log with only ``extra`` bytes of padding, so mutations land in records."""
    end = parse_tcg_event_log(build_ccel(events)[1]).end
    return build_ccel(events, laml=end + extra, padding=padding)


_SEED_TABLE, _SEED_LOG = _tight(_events(), 0xFF, 24)
_SEEDS = (
    _SEED_LOG,
    _tight(_events()[:3], 0x00, 8)[1],
    header(spec_id([(SHA256, 32), (SHA384, 48)]))
    + record(1, 1, [(SHA256, bytes(32)), (SHA384, bytes(48))], b"ev")
    + record(4, 3, [(SHA384, bytes(48))], b""),
)


@st.composite
def mutated_logs(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["byte", "u32", "u16", "cut", "extend"]))
        if kind == "byte":
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind in ("u32", "u16"):
            # Counts and sizes are where parsers break: write boundary values into them.
            width = 4 if kind == "u32" else 2
            at = draw(st.integers(0, len(data) - width))
            value = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 48, 0x0C, 0x7FFF, 0xFFFF]))
            if width == 4:
                value = draw(st.sampled_from([value, 0x7FFFFFFF, 0xFFFFFFFF, len(data)]))
            data[at : at + width] = value.to_bytes(width, "little")
        elif kind == "cut":
            del data[draw(st.integers(0, len(data))) :]
        else:
            data += draw(st.binary(min_size=1, max_size=80))
        if len(data) < 4:
            break
    return bytes(data)


@budget(4_000)
@given(st.binary(max_size=400))
def test_fuzz_random_log_bytes(data: bytes) -> None:
    _parse_all(None, data)


@budget(9_000)
@given(mutated_logs())
def test_fuzz_mutated_logs(data: bytes) -> None:
    _parse_all(None, data)


@st.composite
def mutated_tables(draw: st.DrawFn) -> bytes:
    table = bytearray(_SEED_TABLE)
    for _ in range(draw(st.integers(1, 3))):
        if table and draw(st.booleans()):
            table[draw(st.integers(0, len(table) - 1))] = draw(st.integers(0, 255))
        else:
            del table[draw(st.integers(0, len(table))) :]
    if draw(st.booleans()) and len(table) > 9:
        table = bytearray(_fix_checksum(table))  # get past the checksum to the fields behind it
    return bytes(table)


@budget(3_000)
@given(st.one_of(mutated_tables(), st.binary(max_size=80)), st.sampled_from(_SEEDS))
def test_fuzz_tables(table: bytes, data: bytes) -> None:
    _parse_all(table, data)
