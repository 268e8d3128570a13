"""Collateral decoding: QuoteCollateralV3 JSON, TCB info and QE identity; every defect is a typed
CollateralFormatError, never a KeyError or pydantic error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cllm.errors import CollateralFormatError
from cllm.verify import Collateral, load_collateral, parse_qe_identity, parse_tcb_info
from vectors import case, require_vectors


def _good() -> Collateral:
    return load_collateral(require_vectors() / case("gotdxguest-cos113@20250604")["collateral"])


def test_round_trip_through_json() -> None:
    collateral = _good()
    assert Collateral.from_json(json.dumps(collateral.to_json_dict())) == collateral


def test_pem_crls_are_accepted() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    collateral = _good()
    doc = collateral.to_json_dict()
    doc["pck_crl"] = x509.load_der_x509_crl(collateral.pck_crl).public_bytes(Encoding.PEM).decode()
    assert Collateral.from_json_dict(doc).pck_crl == collateral.pck_crl


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"tcb_info": None}, "tcb_info"),
        ({"tcb_info_signature": "00"}, "64 bytes"),
        ({"qe_identity_signature": "zz" * 64}, "not hex"),
        ({"root_ca_crl": 5}, "hex string"),
        ({"pck_crl_issuer_chain": ""}, "non-empty"),
    ],
)
def test_bad_fields(change: dict[str, object], fragment: str) -> None:
    doc: dict[str, object] = dict(_good().to_json_dict())
    doc.update(change)
    with pytest.raises(CollateralFormatError) as raised:
        Collateral.from_json_dict(doc)
    assert fragment in raised.value.message
    assert raised.value.code == "collateral_format"


def test_missing_key() -> None:
    doc = _good().to_json_dict()
    del doc["qe_identity"]
    with pytest.raises(CollateralFormatError, match="qe_identity"):
        Collateral.from_json_dict(doc)


@pytest.mark.parametrize("text", ["", "[]", "{", "null", '"x"', "[" * 100_000])
def test_not_an_object(text: str) -> None:
    with pytest.raises(CollateralFormatError):
        Collateral.from_json(text)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(CollateralFormatError, match="cannot read"):
        load_collateral(tmp_path / "missing.json")


def test_tcb_info_v2_is_unsupported() -> None:
    with pytest.raises(CollateralFormatError) as raised:
        parse_tcb_info(b'{"version":2,"fmspc":"00606A000000"}')
    assert raised.value.code == "unsupported_collateral_format"


@pytest.mark.parametrize(
    "doc",
    [
        {"id": "TDX", "version": 3},
        {"id": "XYZ", "version": 3},
    ],
)
def test_tcb_info_v3_missing_fields(doc: dict[str, object]) -> None:
    with pytest.raises(CollateralFormatError) as raised:
        parse_tcb_info(json.dumps(doc).encode())
    assert raised.value.code == "collateral_format"


def test_qe_identity_version_1_is_unsupported() -> None:
    with pytest.raises(CollateralFormatError) as raised:
        parse_qe_identity(b'{"id":"QE","version":1}')
    assert raised.value.code == "unsupported_collateral_format"


def test_unknown_tcb_status_is_rejected() -> None:
    raw = _good().tcb_info.replace(b'"UpToDate"', b'"Fine"', 1)
    with pytest.raises(CollateralFormatError):
        parse_tcb_info(raw)
