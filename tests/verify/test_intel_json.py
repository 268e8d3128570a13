"""TCB info and QE identity: the encoders beside their parsers round-trip (property tests), and
the hand-written parser refuses every malformed field with a typed, named error."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cllm.errors import CollateralFormatError
from cllm.verify import (
    IsvTcb,
    IsvTcbLevel,
    QeIdentity,
    Tcb,
    TcbComponent,
    TcbInfo,
    TcbLevel,
    TcbStatus,
    TdxModule,
    TdxModuleIdentity,
    encode_qe_identity,
    encode_tcb_info,
    load_collateral,
    parse_qe_identity,
    parse_tcb_info,
)
from vectors import case, require_vectors

# -- strategies ------------------------------------------------------------------------------

_times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=0))
_statuses = st.sampled_from(TcbStatus)
_advisories = st.lists(st.text(max_size=24), max_size=3).map(tuple)
_json_ints = st.integers(min_value=-(2**70), max_value=2**70)


def _hex(size: int) -> st.SearchStrategy[str]:
    case_of = st.sampled_from((str.lower, str.upper))
    return st.tuples(st.binary(min_size=size, max_size=size), case_of).map(
        lambda pair: pair[1](pair[0].hex())
    )


def _components() -> st.SearchStrategy[tuple[TcbComponent, ...]]:
    return st.lists(st.integers(0, 255), min_size=16, max_size=16).map(
        lambda svns: tuple(TcbComponent(svn) for svn in svns)
    )


def _isv_levels(bits: int, *, min_size: int) -> st.SearchStrategy[tuple[IsvTcbLevel, ...]]:
    level = st.builds(
        IsvTcbLevel,
        tcb=st.builds(IsvTcb, isvsvn=st.integers(0, (1 << bits) - 1)),
        tcb_date=_times,
        tcb_status=_statuses,
        advisory_ids=_advisories,
    )
    return st.lists(level, min_size=min_size, max_size=4).map(tuple)


@st.composite
def tcb_infos(draw: st.DrawFn) -> TcbInfo:
    tdx = draw(st.booleans())
    levels = st.builds(
        TcbLevel,
        tcb=st.builds(
            Tcb,
            sgxtcbcomponents=_components(),
            pcesvn=st.integers(0, 0xFFFF),
            tdxtcbcomponents=_components() if tdx else st.none(),
        ),
        tcb_date=_times,
        tcb_status=_statuses,
        advisory_ids=_advisories,
    )
    module = st.builds(TdxModule, mrsigner=_hex(48), attributes=_hex(8), attributes_mask=_hex(8))
    identity = st.builds(
        TdxModuleIdentity,
        id=st.text(max_size=8),
        mrsigner=_hex(48),
        attributes=_hex(8),
        attributes_mask=_hex(8),
        tcb_levels=_isv_levels(8, min_size=0),
    )
    return TcbInfo(
        id="TDX" if tdx else "SGX",
        version=3,
        issue_date=draw(_times),
        next_update=draw(_times),
        fmspc=draw(_hex(6)),
        pce_id=draw(_hex(2)),
        tcb_type=draw(_json_ints),
        tcb_evaluation_data_number=draw(_json_ints),
        tcb_levels=tuple(draw(st.lists(levels, min_size=1, max_size=5))),
        tdx_module=draw(module if tdx else st.none() | module),
        tdx_module_identities=draw(st.none() | st.lists(identity, max_size=3).map(tuple)),
    )


qe_identities = st.builds(
    QeIdentity,
    id=st.sampled_from(("QE", "QVE", "TD_QE")),
    version=st.just(2),
    issue_date=_times,
    next_update=_times,
    tcb_evaluation_data_number=_json_ints,
    miscselect=_hex(4),
    miscselect_mask=_hex(4),
    attributes=_hex(16),
    attributes_mask=_hex(16),
    mrsigner=_hex(32),
    isvprodid=st.integers(0, 0xFFFF),
    tcb_levels=_isv_levels(16, min_size=1),
)


def _evaluation_order(info: TcbInfo) -> TcbInfo:
    """Intel QVL's order, written out from the spec: SGX SVNs, PCESVN, TDX SVNs, highest
    first; equal keys keep their listed order."""

    def key(level: TcbLevel) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
        tdx = level.tcb.tdxtcbcomponents or ()
        sgx = tuple(c.svn for c in level.tcb.sgxtcbcomponents)
        return sgx, level.tcb.pcesvn, tuple(c.svn for c in tdx)

    return dataclasses.replace(
        info, tcb_levels=tuple(sorted(info.tcb_levels, key=key, reverse=True))
    )


# -- round trips -----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(tcb_infos())
def test_tcb_info_round_trips(info: TcbInfo) -> None:
    encoded = encode_tcb_info(info)
    parsed = parse_tcb_info(encoded)
    assert parsed == _evaluation_order(info)
    assert parsed.validity == (int(info.issue_date.timestamp()), int(info.next_update.timestamp()))
    # Levels already in evaluation order are written back byte for byte.
    assert encode_tcb_info(parsed) == encode_tcb_info(_evaluation_order(info))


@settings(max_examples=150, deadline=None)
@given(qe_identities)
def test_qe_identity_round_trips(identity: QeIdentity) -> None:
    encoded = encode_qe_identity(identity)
    assert parse_qe_identity(encoded) == identity
    assert encode_qe_identity(parse_qe_identity(encoded)) == encoded


def test_real_documents_decode_and_re_encode_to_the_same_document() -> None:
    # Intel's own documents carry fields cllm does not read (a component's category), so the
    # bytes differ; what is read must survive encoding.
    collateral = load_collateral(
        require_vectors() / case("dcapqvl-tdx-quote@20250313")["collateral"]
    )
    info = parse_tcb_info(collateral.tcb_info)
    assert parse_tcb_info(encode_tcb_info(info)) == info
    identity = parse_qe_identity(collateral.qe_identity)
    assert parse_qe_identity(encode_qe_identity(identity)) == identity
    assert identity.validity[0] < identity.validity[1]


def test_encoders_refuse_what_no_document_holds() -> None:
    identity = parse_qe_identity(encode_qe_identity(_a_qe_identity()))
    with pytest.raises(ValueError, match="whole seconds"):
        encode_qe_identity(
            dataclasses.replace(identity, issue_date=identity.issue_date.replace(microsecond=5))
        )
    naive = datetime(2025, 1, 1)
    with pytest.raises(ValueError, match="whole seconds"):
        encode_qe_identity(dataclasses.replace(identity, next_update=naive))


# -- malformed fields: always CollateralFormatError, with the field's path --------------------


def _a_qe_identity() -> QeIdentity:
    moment = datetime(2025, 3, 13, 21, 56, 39, tzinfo=UTC)
    return QeIdentity(
        id="TD_QE",
        version=2,
        issue_date=moment,
        next_update=moment.replace(month=4),
        tcb_evaluation_data_number=17,
        miscselect="00000000",
        miscselect_mask="FFFFFFFF",
        attributes="11000000000000000000000000000000",
        attributes_mask="FBFFFFFFFFFFFFFF0000000000000000",
        mrsigner="DC9E2A7C6F948F17474E34A7FC43ED030F7C1563F1BABDDF6340C82E0E54A8C5",
        isvprodid=2,
        tcb_levels=(IsvTcbLevel(IsvTcb(4), moment, TcbStatus.UP_TO_DATE),),
    )


def _tdx_tcb_info_doc() -> dict[str, Any]:
    collateral = load_collateral(
        require_vectors() / case("dcapqvl-tdx-quote@20250313")["collateral"]
    )
    doc: dict[str, Any] = json.loads(collateral.tcb_info)
    return doc


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (("tcbLevels", 0, "tcb", "sgxtcbcomponents", 0, "svn"), "7", "must be an integer"),
        (("tcbLevels", 0, "tcb", "sgxtcbcomponents", 0, "svn"), True, "must be an integer"),
        (("tcbLevels", 0, "tcb", "sgxtcbcomponents", 0, "svn"), 7.0, "must be an integer"),
        (("tcbLevels", 0, "tcb", "sgxtcbcomponents", 0, "svn"), 256, "must be 0..255"),
        (("tcbLevels", 0, "tcb", "pcesvn"), -1, "must be 0..65535"),
        (("tcbLevels", 0, "tcbDate"), "2025-03-13T21:56:39", "lacks a UTC offset"),
        (("tcbLevels", 0, "tcbDate"), 1741902999, "must be a string"),
        (("issueDate"), "yesterday", "not an ISO 8601 time"),
        (("fmspc"), "B0C06F000000\n", "6 bytes of hex"),
        (("fmspc"), "B0C06F00000G", "6 bytes of hex"),
        (("pceId"), 0, "must be a string"),
        (("tcbLevels", 0, "tcbStatus"), "Fine", "is not a TCB status"),
        (("tcbLevels", 0, "advisoryIDs"), [1], "list of strings"),
        (("tcbLevels",), [], "must not be empty"),
        (("tcbLevels",), {}, "must be a list"),
        (("tcbLevels", 0), [], "must be an object"),
        (("tdxModule", "mrsigner"), "00", "48 bytes of hex"),
        (("tdxModuleIdentities", 0, "tcbLevels", 0, "tcb", "isvsvn"), 256, "must be 0..255"),
        (("id",), "XYZ", "must be one of SGX, TDX"),
    ],
)
def test_a_malformed_tcb_info_field_is_named(
    path: tuple[str | int, ...] | str, value: object, fragment: str
) -> None:
    doc = _tdx_tcb_info_doc()
    keys = (path,) if isinstance(path, str) else path
    target: Any = doc
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    with pytest.raises(CollateralFormatError) as raised:
        parse_tcb_info(json.dumps(doc).encode())
    assert raised.value.code == "collateral_format"
    assert fragment in raised.value.message
    assert str(keys[-1]) in raised.value.message


def test_fifteen_components_are_refused() -> None:
    doc = _tdx_tcb_info_doc()
    del doc["tcbLevels"][0]["tcb"]["tdxtcbcomponents"][0]
    with pytest.raises(CollateralFormatError) as raised:
        parse_tcb_info(json.dumps(doc).encode())
    assert raised.value.code == "collateral_format"
    assert "tcbLevels[0].tcb.tdxtcbcomponents must list 16 components" in raised.value.message


def test_a_missing_field_is_named() -> None:
    doc = json.loads(encode_qe_identity(_a_qe_identity()))
    del doc["mrsigner"]
    with pytest.raises(CollateralFormatError) as raised:
        parse_qe_identity(json.dumps(doc).encode())
    assert raised.value.code == "collateral_format"
    assert "mrsigner is missing" in raised.value.message


def test_qe_isvsvn_has_sixteen_bits() -> None:
    doc = json.loads(encode_qe_identity(_a_qe_identity()))
    doc["tcbLevels"][0]["tcb"]["isvsvn"] = 0xFFFF
    assert parse_qe_identity(json.dumps(doc).encode()).tcb_levels[0].tcb.isvsvn == 0xFFFF
    doc["tcbLevels"][0]["tcb"]["isvsvn"] = 0x10000
    with pytest.raises(CollateralFormatError, match=r"must be 0\.\.65535"):
        parse_qe_identity(json.dumps(doc).encode())


def test_snake_case_names_are_read_as_before() -> None:
    # The pydantic models this parser replaced accepted a field's own name beside Intel's.
    doc = json.loads(encode_qe_identity(_a_qe_identity()))
    doc["attributes_mask"] = doc.pop("attributesMask")
    assert parse_qe_identity(json.dumps(doc).encode()) == _a_qe_identity()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_value_anywhere_gives_a_typed_error_or_a_document(data: st.DataObject) -> None:
    doc: Any = json.loads(encode_tcb_info(data.draw(tcb_infos())))
    target = doc
    while True:  # walk down to a random container, then replace one of its entries
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        child = target[key]
        if isinstance(child, dict | list) and child and data.draw(st.booleans()):
            target = child
            continue
        target[key] = data.draw(_json_values)
        break
    try:
        parse_tcb_info(json.dumps(doc).encode())
    except CollateralFormatError as exc:
        assert exc.code in ("collateral_format", "unsupported_collateral_format")
