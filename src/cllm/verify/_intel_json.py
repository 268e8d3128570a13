"""TCB info and QE identity: Intel's signed JSON collateral, decoded and encoded.

Parsed by hand into frozen dataclasses (no pydantic: this is on the path of every one-shot
``cllm quote verify``, where building pydantic models cost more than the verification). Every
defect is a ``CollateralFormatError`` naming the field; a version this module does not know is
``unsupported_collateral_format``. Decoding is strict where Intel's documents are: JSON
integers (never strings, floats or booleans) in range, RFC 3339 times with an offset, hex
strings of their exact length. Keys are Intel's camelCase names; unknown keys are ignored
(Intel adds some, e.g. a component's ``category``).

The signature covers the exact bytes Intel served, so the verifier never re-serialises a
document it checks. The encoders exist for the simulated PCS and for tests: they write the
compact form Intel serves, keys in Intel's order, and ``parse(encode(doc)) == doc`` for every
document in evaluation order (round-trip property tests in tests/verify/).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias, cast

from cllm.errors import CollateralFormatError
from cllm.verify._status import TcbStatus

__all__ = [
    "IsvTcb",
    "IsvTcbLevel",
    "ModuleTcb",
    "ModuleTcbLevel",
    "QeIdentity",
    "QeTcb",
    "QeTcbLevel",
    "Tcb",
    "TcbComponent",
    "TcbInfo",
    "TcbLevel",
    "TdxModule",
    "TdxModuleIdentity",
    "encode_qe_identity",
    "encode_tcb_info",
    "parse_qe_identity",
    "parse_tcb_info",
]

_SVN_COUNT: Final = 16


def _validity(issue_date: datetime, next_update: datetime) -> tuple[int, int]:
    return int(issue_date.timestamp()), int(next_update.timestamp())


# -- the decoded documents -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TcbComponent:
    svn: int


@dataclass(frozen=True, slots=True)
class Tcb:
    sgxtcbcomponents: tuple[TcbComponent, ...]  # 16
    pcesvn: int
    tdxtcbcomponents: tuple[TcbComponent, ...] | None = None  # 16; TDX TCB info only


@dataclass(frozen=True, slots=True)
class TcbLevel:
    tcb: Tcb
    tcb_date: datetime
    tcb_status: TcbStatus
    advisory_ids: tuple[str, ...] = ()
    sgx_svns: tuple[int, ...] = field(init=False, repr=False, compare=False)
    tdx_svns: tuple[int, ...] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tdx = self.tcb.tdxtcbcomponents
        object.__setattr__(self, "sgx_svns", tuple(c.svn for c in self.tcb.sgxtcbcomponents))
        object.__setattr__(self, "tdx_svns", None if tdx is None else tuple(c.svn for c in tdx))


@dataclass(frozen=True, slots=True)
class IsvTcb:
    """The TCB of a TDX module identity level (8-bit ISVSVN) or a QE identity level (16-bit)."""

    isvsvn: int


@dataclass(frozen=True, slots=True)
class IsvTcbLevel:
    """One TCB level of a TDX module identity or of the QE identity."""

    tcb: IsvTcb
    tcb_date: datetime
    tcb_status: TcbStatus
    advisory_ids: tuple[str, ...] = ()


# One shape, two documents (the parser applies each one's ISVSVN range).
ModuleTcb: TypeAlias = IsvTcb
QeTcb: TypeAlias = IsvTcb
ModuleTcbLevel: TypeAlias = IsvTcbLevel
QeTcbLevel: TypeAlias = IsvTcbLevel


@dataclass(frozen=True, slots=True)
class TdxModule:
    mrsigner: str  # hex, 48 bytes
    attributes: str  # hex, 8 bytes
    attributes_mask: str  # hex, 8 bytes


@dataclass(frozen=True, slots=True)
class TdxModuleIdentity:
    id: str
    mrsigner: str
    attributes: str
    attributes_mask: str
    tcb_levels: tuple[IsvTcbLevel, ...]


@dataclass(frozen=True, slots=True)
class TcbInfo:
    """TCB info version 3 (Intel PCS v4). ``tcb_levels`` come from ``parse_tcb_info`` in
    Intel's evaluation order; hex fields keep the text Intel wrote."""

    id: Literal["SGX", "TDX"]
    version: Literal[3]
    issue_date: datetime
    next_update: datetime
    fmspc: str  # hex, 6 bytes
    pce_id: str  # hex, 2 bytes
    tcb_type: int
    tcb_evaluation_data_number: int
    tcb_levels: tuple[TcbLevel, ...]
    tdx_module: TdxModule | None = None
    tdx_module_identities: tuple[TdxModuleIdentity, ...] | None = None
    validity: tuple[int, int] = field(init=False, repr=False, compare=False)
    """issueDate .. nextUpdate in unix seconds, both inclusive."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "validity", _validity(self.issue_date, self.next_update))


@dataclass(frozen=True, slots=True)
class QeIdentity:
    """QE identity version 2 (enclave identity of the QE, QVE or TD_QE)."""

    id: Literal["QE", "QVE", "TD_QE"]
    version: Literal[2]
    issue_date: datetime
    next_update: datetime
    tcb_evaluation_data_number: int
    miscselect: str  # hex, 4 bytes
    miscselect_mask: str
    attributes: str  # hex, 16 bytes
    attributes_mask: str
    mrsigner: str  # hex, 32 bytes
    isvprodid: int
    tcb_levels: tuple[IsvTcbLevel, ...]
    validity: tuple[int, int] = field(init=False, repr=False, compare=False)
    """issueDate .. nextUpdate in unix seconds, both inclusive."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "validity", _validity(self.issue_date, self.next_update))


# -- decoding --------------------------------------------------------------------------------


class _FieldError(Exception):
    """A defect at a path inside the document; becomes one CollateralFormatError."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path
        self.problem = problem


_MISSING: Final = object()


class _Fields:
    """One JSON object of the document, read field by field. Intel's camelCase key first, then
    the field's snake_case name (as the pydantic models this replaced accepted both)."""

    __slots__ = ("_doc", "_path")

    def __init__(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise _FieldError(path, "must be an object")
        self._doc: dict[str, Any] = value
        self._path = path

    def path(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def _get(self, key: str, name: str | None) -> tuple[Any, str]:
        path = self.path(key)
        value = self._doc.get(key, _MISSING)
        if value is _MISSING and name is not None:
            value = self._doc.get(name, _MISSING)
        return value, path

    def required(self, key: str, name: str | None = None) -> tuple[Any, str]:
        value, path = self._get(key, name)
        if value is _MISSING:
            raise _FieldError(path, "is missing")
        return value, path

    def optional(self, key: str, name: str | None = None) -> tuple[Any, str] | None:
        value, path = self._get(key, name)
        return None if value is _MISSING or value is None else (value, path)

    def integer(self, key: str, name: str | None = None, *, bits: int | None = None) -> int:
        value, path = self.required(key, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _FieldError(path, "must be an integer")
        number: int = value
        if bits is not None and not 0 <= number < 1 << bits:
            raise _FieldError(path, f"must be 0..{(1 << bits) - 1}")
        return number

    def text(self, key: str, name: str | None = None) -> str:
        value, path = self.required(key, name)
        if not isinstance(value, str):
            raise _FieldError(path, "must be a string")
        return value

    def hex(self, key: str, name: str | None = None, *, size: int) -> str:
        value = self.text(key, name)
        if len(value) != 2 * size or not _is_hex(value):
            raise _FieldError(self.path(key), f"must be {size} bytes of hex")
        return value

    def time(self, key: str, name: str | None = None) -> datetime:
        value = self.text(key, name)
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise _FieldError(self.path(key), "is not an ISO 8601 time") from exc
        if moment.tzinfo is None:
            raise _FieldError(self.path(key), "lacks a UTC offset")
        return moment

    def status(self, key: str, name: str | None = None) -> TcbStatus:
        value = self.text(key, name)
        try:
            return TcbStatus(value)
        except ValueError as exc:
            raise _FieldError(self.path(key), f"is not a TCB status: {value!r}") from exc

    def strings(self, key: str, name: str | None = None) -> tuple[str, ...]:
        found = self.optional(key, name)
        if found is None:
            return ()
        value, path = found
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise _FieldError(path, "must be a list of strings")
        return tuple(value)

    def children(
        self, key: str, name: str | None = None, *, optional: bool = False
    ) -> list[_Fields] | None:
        found = self.optional(key, name) if optional else self.required(key, name)
        if found is None:
            return None
        value, path = found
        if not isinstance(value, list):
            raise _FieldError(path, "must be a list")
        return [_Fields(item, f"{path}[{index}]") for index, item in enumerate(value)]

    def child(self, key: str, name: str | None = None, *, optional: bool = False) -> _Fields | None:
        found = self.optional(key, name) if optional else self.required(key, name)
        return None if found is None else _Fields(*found)

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in allowed:
            raise _FieldError(self.path(key), f"must be one of {', '.join(allowed)}")
        return value


_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def _is_hex(value: str) -> bool:
    return _HEX_DIGITS.issuperset(value)


def _required_list(fields: _Fields, key: str, name: str | None = None) -> list[_Fields]:
    found = fields.children(key, name)
    assert found is not None  # required: children() raises when absent
    return found


def _required_object(fields: _Fields, key: str) -> _Fields:
    found = fields.child(key)
    assert found is not None
    return found


def _components(fields: _Fields, key: str, *, optional: bool) -> tuple[TcbComponent, ...] | None:
    items = fields.children(key, optional=optional)
    if items is None:
        return None
    if len(items) != _SVN_COUNT:
        raise _FieldError(fields.path(key), f"must list {_SVN_COUNT} components")
    return tuple(TcbComponent(svn=item.integer("svn", bits=8)) for item in items)


def _tcb_level(fields: _Fields) -> TcbLevel:
    tcb = _required_object(fields, "tcb")
    sgx = _components(tcb, "sgxtcbcomponents", optional=False)
    assert sgx is not None
    return TcbLevel(
        tcb=Tcb(
            sgxtcbcomponents=sgx,
            pcesvn=tcb.integer("pcesvn", bits=16),
            tdxtcbcomponents=_components(tcb, "tdxtcbcomponents", optional=True),
        ),
        tcb_date=fields.time("tcbDate", "tcb_date"),
        tcb_status=fields.status("tcbStatus", "tcb_status"),
        advisory_ids=fields.strings("advisoryIDs", "advisory_ids"),
    )


def _isv_level(fields: _Fields, *, bits: int) -> IsvTcbLevel:
    return IsvTcbLevel(
        tcb=IsvTcb(isvsvn=_required_object(fields, "tcb").integer("isvsvn", bits=bits)),
        tcb_date=fields.time("tcbDate", "tcb_date"),
        tcb_status=fields.status("tcbStatus", "tcb_status"),
        advisory_ids=fields.strings("advisoryIDs", "advisory_ids"),
    )


def _tdx_module(fields: _Fields) -> TdxModule:
    return TdxModule(
        mrsigner=fields.hex("mrsigner", size=48),
        attributes=fields.hex("attributes", size=8),
        attributes_mask=fields.hex("attributesMask", "attributes_mask", size=8),
    )


def _module_identity(fields: _Fields) -> TdxModuleIdentity:
    module = _tdx_module(fields)
    return TdxModuleIdentity(
        id=fields.text("id"),
        mrsigner=module.mrsigner,
        attributes=module.attributes,
        attributes_mask=module.attributes_mask,
        tcb_levels=tuple(
            _isv_level(item, bits=8) for item in _required_list(fields, "tcbLevels", "tcb_levels")
        ),
    )


def _non_empty(levels: list[_Fields], fields: _Fields) -> list[_Fields]:
    if not levels:
        raise _FieldError(fields.path("tcbLevels"), "must not be empty")
    return levels


def _load_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CollateralFormatError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise CollateralFormatError(f"{what} must be a JSON object")
    return doc


def _malformed(what: str, exc: _FieldError) -> CollateralFormatError:
    where = exc.path or "the document"
    return CollateralFormatError(f"{what} is malformed: {where} {exc.problem}")


def parse_tcb_info(raw: bytes) -> TcbInfo:
    """Decode signed TCB info text; ``tcb_levels`` come back in Intel's evaluation order."""
    doc = _load_object(raw, "TCB info")
    version = doc.get("version")
    if version != 3 or "id" not in doc:
        raise CollateralFormatError(
            f"TCB info version {version!r}{'' if 'id' in doc else ' without id'} is not supported "
            "(Intel PCS v4 TCB info version 3 is required)",
            code="unsupported_collateral_format",
        )
    fields = _Fields(doc, "")
    try:
        tee = cast("Literal['SGX', 'TDX']", fields.choice("id", ("SGX", "TDX")))
        module = fields.child("tdxModule", "tdx_module", optional=True)
        identities = fields.children("tdxModuleIdentities", "tdx_module_identities", optional=True)
        levels = _non_empty(_required_list(fields, "tcbLevels", "tcb_levels"), fields)
        info = TcbInfo(
            id=tee,
            version=3,
            issue_date=fields.time("issueDate", "issue_date"),
            next_update=fields.time("nextUpdate", "next_update"),
            fmspc=fields.hex("fmspc", size=6),
            pce_id=fields.hex("pceId", "pce_id", size=2),
            tcb_type=fields.integer("tcbType", "tcb_type"),
            tcb_evaluation_data_number=fields.integer(
                "tcbEvaluationDataNumber", "tcb_evaluation_data_number"
            ),
            tdx_module=None if module is None else _tdx_module(module),
            tdx_module_identities=(
                None if identities is None else tuple(_module_identity(i) for i in identities)
            ),
            tcb_levels=tuple(
                sorted((_tcb_level(level) for level in levels), key=_level_order, reverse=True)
            ),
        )
    except _FieldError as exc:
        raise _malformed("TCB info", exc) from None
    if info.id == "TDX" and any(level.tdx_svns is None for level in info.tcb_levels):
        raise CollateralFormatError("TDX TCB info level without tdxtcbcomponents")
    if info.id == "TDX" and info.tdx_module is None:
        raise CollateralFormatError("TDX TCB info without tdxModule")
    return info


def _level_order(level: TcbLevel) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
    """Intel QVL's TcbLevel ordering: SGX component SVNs, then PCESVN, then TDX component
    SVNs, compared lexicographically. Levels are tried highest first (a stable sort keeps
    Intel's listing order among equal keys, as dcap-qvl does)."""
    return (level.sgx_svns, level.tcb.pcesvn, level.tdx_svns or ())


def parse_qe_identity(raw: bytes) -> QeIdentity:
    doc = _load_object(raw, "QE identity")
    if doc.get("version") != 2:
        raise CollateralFormatError(
            f"QE identity version {doc.get('version')!r} is not supported (2 is required)",
            code="unsupported_collateral_format",
        )
    fields = _Fields(doc, "")
    try:
        qe = cast("Literal['QE', 'QVE', 'TD_QE']", fields.choice("id", ("QE", "QVE", "TD_QE")))
        levels = _non_empty(_required_list(fields, "tcbLevels", "tcb_levels"), fields)
        return QeIdentity(
            id=qe,
            version=2,
            issue_date=fields.time("issueDate", "issue_date"),
            next_update=fields.time("nextUpdate", "next_update"),
            tcb_evaluation_data_number=fields.integer(
                "tcbEvaluationDataNumber", "tcb_evaluation_data_number"
            ),
            miscselect=fields.hex("miscselect", size=4),
            miscselect_mask=fields.hex("miscselectMask", "miscselect_mask", size=4),
            attributes=fields.hex("attributes", size=16),
            attributes_mask=fields.hex("attributesMask", "attributes_mask", size=16),
            mrsigner=fields.hex("mrsigner", size=32),
            isvprodid=fields.integer("isvprodid", bits=16),
            tcb_levels=tuple(_isv_level(level, bits=16) for level in levels),
        )
    except _FieldError as exc:
        raise _malformed("QE identity", exc) from None


# -- encoding --------------------------------------------------------------------------------


def _time(moment: datetime) -> str:
    # Intel writes whole seconds in UTC; a finer time could not be read back as written.
    if moment.tzinfo is None or moment.microsecond:
        raise ValueError("collateral times are timezone-aware whole seconds")
    try:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except OverflowError as exc:  # an offset that moves the time past year 9999
        raise ValueError("collateral time out of range") from exc


def _level_common(level: TcbLevel | IsvTcbLevel, tcb: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tcb": tcb,
        "tcbDate": _time(level.tcb_date),
        "tcbStatus": level.tcb_status.value,
    }
    if level.advisory_ids:  # Intel omits an empty list
        doc["advisoryIDs"] = list(level.advisory_ids)
    return doc


def _tcb_json(tcb: Tcb) -> dict[str, Any]:
    if len(tcb.sgxtcbcomponents) != _SVN_COUNT or (
        tcb.tdxtcbcomponents is not None and len(tcb.tdxtcbcomponents) != _SVN_COUNT
    ):
        raise ValueError("a TCB level lists 16 SGX and 16 TDX component SVNs")
    doc: dict[str, Any] = {
        "sgxtcbcomponents": [{"svn": c.svn} for c in tcb.sgxtcbcomponents],
        "pcesvn": tcb.pcesvn,
    }
    if tcb.tdxtcbcomponents is not None:
        doc["tdxtcbcomponents"] = [{"svn": c.svn} for c in tcb.tdxtcbcomponents]
    return doc


def _module_json(module: TdxModule | TdxModuleIdentity) -> dict[str, Any]:
    return {
        "mrsigner": module.mrsigner,
        "attributes": module.attributes,
        "attributesMask": module.attributes_mask,
    }


def _compact(doc: dict[str, Any]) -> bytes:
    # Compact, as Intel serves it; a signature covers exactly these bytes.
    return json.dumps(doc, separators=(",", ":")).encode()


def encode_tcb_info(info: TcbInfo) -> bytes:
    """The TCB info JSON text (the ``tcbInfo`` object a signature covers), compact, keys in
    Intel's order. Raises ``ValueError`` for what no TCB info holds: a time that is not whole
    seconds with an offset, a component list that is not 16 long."""
    doc: dict[str, Any] = {
        "id": info.id,
        "version": info.version,
        "issueDate": _time(info.issue_date),
        "nextUpdate": _time(info.next_update),
        "fmspc": info.fmspc,
        "pceId": info.pce_id,
        "tcbType": info.tcb_type,
        "tcbEvaluationDataNumber": info.tcb_evaluation_data_number,
    }
    if info.tdx_module is not None:
        doc["tdxModule"] = _module_json(info.tdx_module)
    if info.tdx_module_identities is not None:
        doc["tdxModuleIdentities"] = [
            {
                "id": identity.id,
                **_module_json(identity),
                "tcbLevels": [
                    _level_common(level, {"isvsvn": level.tcb.isvsvn})
                    for level in identity.tcb_levels
                ],
            }
            for identity in info.tdx_module_identities
        ]
    doc["tcbLevels"] = [_level_common(level, _tcb_json(level.tcb)) for level in info.tcb_levels]
    return _compact(doc)


def encode_qe_identity(identity: QeIdentity) -> bytes:
    """The QE identity JSON text (the ``enclaveIdentity`` object a signature covers), compact,
    keys in Intel's order."""
    return _compact(
        {
            "id": identity.id,
            "version": identity.version,
            "issueDate": _time(identity.issue_date),
            "nextUpdate": _time(identity.next_update),
            "tcbEvaluationDataNumber": identity.tcb_evaluation_data_number,
            "miscselect": identity.miscselect,
            "miscselectMask": identity.miscselect_mask,
            "attributes": identity.attributes,
            "attributesMask": identity.attributes_mask,
            "mrsigner": identity.mrsigner,
            "isvprodid": identity.isvprodid,
            "tcbLevels": [
                _level_common(level, {"isvsvn": level.tcb.isvsvn}) for level in identity.tcb_levels
            ],
        }
    )
