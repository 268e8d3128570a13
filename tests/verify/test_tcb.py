"""TCB evaluation paths the real corpus does not reach (no case has a revoked or out-of-date QE,
a TD relaunch, or an out-of-date TDX module with a configuration-needed platform): built from
synthetic TCB info documents, checked against Intel QVL's rules."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from cllm.errors import VerificationError
from cllm.quote import EnclaveReport, PckExtensions, TdReport
from cllm.verify import TcbStatus, parse_qe_identity, parse_tcb_info
from cllm.verify._tcb import combine, match_platform, match_qe_identity, match_tdx_module

S = TcbStatus
ZERO48 = "00" * 48


def _components(*svns: int) -> list[dict[str, int]]:
    values = list(svns) + [0] * (16 - len(svns))
    return [{"svn": v} for v in values]


def _level(sgx: tuple[int, ...], pce: int, tdx: tuple[int, ...], status: str, *adv: str) -> Any:
    return {
        "tcb": {
            "sgxtcbcomponents": _components(*sgx),
            "pcesvn": pce,
            "tdxtcbcomponents": _components(*tdx),
        },
        "tcbDate": "2024-03-13T00:00:00Z",
        "tcbStatus": status,
        "advisoryIDs": list(adv),
    }


def _module_level(isvsvn: int, status: str, *adv: str) -> Any:
    return {
        "tcb": {"isvsvn": isvsvn},
        "tcbDate": "2024-03-13T00:00:00Z",
        "tcbStatus": status,
        "advisoryIDs": list(adv),
    }


def tcb_info(levels: list[Any], modules: dict[str, list[Any]] | None = None) -> bytes:
    module = {"mrsigner": ZERO48, "attributes": "0000000000000000", "attributesMask": "FF" * 8}
    doc = {
        "id": "TDX",
        "version": 3,
        "issueDate": "2025-01-01T00:00:00Z",
        "nextUpdate": "2025-02-01T00:00:00Z",
        "fmspc": "00806F050000",
        "pceId": "0000",
        "tcbType": 0,
        "tcbEvaluationDataNumber": 17,
        "tdxModule": module,
        "tdxModuleIdentities": [
            {"id": module_id, **module, "tcbLevels": module_levels}
            for module_id, module_levels in (modules or {}).items()
        ],
        "tcbLevels": levels,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def qe_identity(levels: list[Any]) -> bytes:
    doc = {
        "id": "TD_QE",
        "version": 2,
        "issueDate": "2025-01-01T00:00:00Z",
        "nextUpdate": "2025-02-01T00:00:00Z",
        "tcbEvaluationDataNumber": 17,
        "miscselect": "00000000",
        "miscselectMask": "FFFFFFFF",
        "attributes": "11000000000000000000000000000000",
        "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": "AA" * 32,
        "isvprodid": 2,
        "tcbLevels": levels,
    }
    return json.dumps(doc).encode()


PCK = PckExtensions(
    ppid=bytes(16),
    tcb_components=(2, 2, 2, 2, 3, 1, 0, 5) + (0,) * 8,
    pce_svn=11,
    cpu_svn=bytes(16),
    pce_id=bytes(2),
    fmspc=bytes.fromhex("00806F050000"),
    sgx_type=0,
    platform_instance_id=None,
    dynamic_platform=None,
    cached_keys=None,
    smt_enabled=None,
)


def td(tee_tcb_svn: tuple[int, ...], svn2: tuple[int, ...] | None = None) -> TdReport:
    def pad(values: tuple[int, ...]) -> bytes:
        return bytes(values) + bytes(16 - len(values))

    return TdReport(
        tee_tcb_svn=pad(tee_tcb_svn),
        mr_seam=bytes(48),
        mr_signer_seam=bytes(48),
        seam_attributes=bytes(8),
        td_attributes=bytes(8),
        xfam=bytes(8),
        mrtd=bytes(48),
        mr_config_id=bytes(48),
        mr_owner=bytes(48),
        mr_owner_config=bytes(48),
        rtmr0=bytes(48),
        rtmr1=bytes(48),
        rtmr2=bytes(48),
        rtmr3=bytes(48),
        report_data=bytes(64),
        tee_tcb_svn2=pad(svn2) if svn2 is not None else None,
        mr_servicetd=bytes(48) if svn2 is not None else None,
    )


QE = EnclaveReport(
    cpu_svn=bytes(16),
    misc_select=0,
    attributes=bytes.fromhex("11000000000000000000000000000000"),
    mr_enclave=bytes(32),
    mr_signer=bytes.fromhex("AA" * 32),
    isv_prod_id=2,
    isv_svn=4,
    report_data=bytes(64),
    raw=b"",
)
SGX = (2, 2, 2, 2, 3, 1, 0, 5)
QE_UP_TO_DATE = [_module_level(4, "UpToDate")]


def evaluate(
    info_raw: bytes, body: TdReport, qe_levels: list[Any] = QE_UP_TO_DATE, qe: EnclaveReport = QE
) -> tuple[TcbStatus, tuple[str, ...]]:
    info = parse_tcb_info(info_raw)
    platform = match_platform(info, PCK, body)
    module = match_tdx_module(info, body)
    qe_match = match_qe_identity(parse_qe_identity(qe_identity(qe_levels)), qe)
    return combine(tcb_info=info, body=body, platform=platform, module=module, qe=qe_match)


def _code(call: Any) -> str:
    with pytest.raises(VerificationError) as raised:
        call()
    return raised.value.code


def test_levels_are_tried_in_intel_order_not_json_order() -> None:
    # Listed oldest first; Intel sorts highest first, so the UpToDate level must win.
    raw = tcb_info(
        [
            _level(SGX, 11, (3, 0, 2), "OutOfDate", "INTEL-SA-1"),
            _level(SGX, 11, (5, 0, 2), "UpToDate"),
        ]
    )
    assert evaluate(raw, td((5, 0, 2))) == (S.UP_TO_DATE, ())
    assert evaluate(raw, td((4, 0, 2))) == (S.OUT_OF_DATE, ("INTEL-SA-1",))


def test_tdx_module_svns_are_skipped_from_module_15_on() -> None:
    raw = tcb_info(
        [_level(SGX, 11, (9, 9, 2), "UpToDate")],
        modules={"TDX_01": [_module_level(3, "UpToDate")]},
    )
    # TEE_TCB_SVN[1] > 0: indices 0 and 1 are judged by the TDX_01 module identity.
    assert evaluate(raw, td((3, 1, 2)))[0] is S.UP_TO_DATE
    # TEE_TCB_SVN[1] == 0: they count, and 0 < 9 matches no level.
    assert _code(lambda: evaluate(raw, td((3, 0, 2)))) == "tcb_not_supported"


def test_sgx_components_below_every_level_is_not_supported() -> None:
    raw = tcb_info([_level((9,) * 8, 11, (0,), "UpToDate")])
    assert _code(lambda: evaluate(raw, td((0,)))) == "tcb_not_supported"


def test_pcesvn_below_every_level_is_not_supported() -> None:
    raw = tcb_info([_level(SGX, 12, (0,), "UpToDate")])
    assert _code(lambda: evaluate(raw, td((0,)))) == "tcb_not_supported"


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ("UpToDate", S.OUT_OF_DATE),
        ("SWHardeningNeeded", S.OUT_OF_DATE),
        ("ConfigurationNeeded", S.OUT_OF_DATE_CONFIGURATION_NEEDED),
        ("ConfigurationAndSWHardeningNeeded", S.OUT_OF_DATE_CONFIGURATION_NEEDED),
        ("OutOfDate", S.OUT_OF_DATE),
        ("Revoked", S.REVOKED),
    ],
)
def test_out_of_date_module_converges(platform: str, expected: TcbStatus) -> None:
    raw = tcb_info(
        [_level(SGX, 11, (0, 0, 2), platform, "INTEL-SA-P")],
        modules={
            "TDX_01": [_module_level(5, "UpToDate"), _module_level(2, "OutOfDate", "INTEL-SA-M")]
        },
    )
    status, advisories = evaluate(raw, td((3, 1, 2)))
    assert status is expected
    assert advisories == ("INTEL-SA-M", "INTEL-SA-P")


def test_revoked_module_revokes() -> None:
    raw = tcb_info(
        [_level(SGX, 11, (0, 0, 2), "UpToDate")],
        modules={"TDX_01": [_module_level(2, "Revoked")]},
    )
    assert evaluate(raw, td((3, 1, 2)))[0] is S.REVOKED


def test_module_below_every_level_is_not_supported() -> None:
    raw = tcb_info(
        [_level(SGX, 11, (0, 0, 2), "UpToDate")],
        modules={"TDX_01": [_module_level(5, "UpToDate")]},
    )
    assert _code(lambda: evaluate(raw, td((3, 1, 2)))) == "tcb_not_supported"


def test_unknown_module_version_is_a_mismatch() -> None:
    raw = tcb_info(
        [_level(SGX, 11, (0,), "UpToDate")], modules={"TDX_01": [_module_level(0, "UpToDate")]}
    )
    assert _code(lambda: evaluate(raw, td((3, 3, 2)))) == "tdx_module_mismatch"


def test_module_signer_and_attributes_must_match() -> None:
    raw = tcb_info([_level(SGX, 11, (0,), "UpToDate")])
    body = replace(td((0,)), mr_signer_seam=b"\x01" + bytes(47))
    assert _code(lambda: evaluate(raw, body)) == "tdx_module_mismatch"
    body = replace(td((0,)), seam_attributes=b"\x01" + bytes(7))
    assert _code(lambda: evaluate(raw, body)) == "tdx_module_mismatch"


@pytest.mark.parametrize(
    ("qe_status", "platform", "expected"),
    [
        ("OutOfDate", "UpToDate", S.OUT_OF_DATE),
        ("OutOfDate", "ConfigurationNeeded", S.OUT_OF_DATE_CONFIGURATION_NEEDED),
        ("OutOfDate", "OutOfDate", S.OUT_OF_DATE),
        ("Revoked", "UpToDate", S.REVOKED),
        ("Revoked", "SWHardeningNeeded", S.REVOKED),
    ],
)
def test_qe_status_converges(qe_status: str, platform: str, expected: TcbStatus) -> None:
    raw = tcb_info([_level(SGX, 11, (0,), platform)])
    qe_levels = [_module_level(9, "UpToDate"), _module_level(4, qe_status, "INTEL-SA-QE")]
    status, advisories = evaluate(raw, td((0,)), qe_levels)
    assert status is expected
    assert advisories == ("INTEL-SA-QE",)


def test_qe_below_every_level_is_not_supported() -> None:
    raw = tcb_info([_level(SGX, 11, (0,), "UpToDate")])
    assert (
        _code(lambda: evaluate(raw, td((0,)), [_module_level(9, "UpToDate")]))
        == "tcb_not_supported"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"mr_signer": bytes(32)},
        {"isv_prod_id": 1},
        {"misc_select": 1},
        {"attributes": bytes(16)},
    ],
)
def test_qe_identity_mismatch(change: dict[str, Any]) -> None:
    raw = tcb_info([_level(SGX, 11, (0,), "UpToDate")])
    assert (
        _code(lambda: evaluate(raw, td((0,)), qe=replace(QE, **change))) == "qe_identity_mismatch"
    )


def _relaunch_info(platform_latest: str = "UpToDate", platform_old: str = "OutOfDate") -> bytes:
    return tcb_info(
        [
            _level(SGX, 11, (0, 0, 4), platform_latest),
            _level(SGX, 11, (0, 0, 2), platform_old),
        ],
        modules={"TDX_01": [_module_level(6, "UpToDate"), _module_level(3, "OutOfDate")]},
    )


def test_td_relaunch_advised_when_the_seam_already_runs_the_latest_tcb() -> None:
    # Launched on module SVN 3 / microcode 2 (out of date); the SEAM now runs 6 / 4.
    status, _ = evaluate(_relaunch_info(), td((3, 1, 2), svn2=(6, 1, 4)))
    assert status is S.TD_RELAUNCH_ADVISED


def test_td_relaunch_advised_configuration_needed() -> None:
    raw = _relaunch_info(platform_old="OutOfDateConfigurationNeeded")
    status, _ = evaluate(raw, td((3, 1, 2), svn2=(6, 1, 4)))
    assert status is S.TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED


def test_no_relaunch_when_the_seam_is_not_current_either() -> None:
    assert evaluate(_relaunch_info(), td((3, 1, 2), svn2=(6, 1, 3)))[0] is S.OUT_OF_DATE
    assert evaluate(_relaunch_info(), td((3, 1, 2), svn2=(5, 1, 4)))[0] is S.OUT_OF_DATE


def test_no_relaunch_for_td_report_10() -> None:
    assert evaluate(_relaunch_info(), td((3, 1, 2)))[0] is S.OUT_OF_DATE


def test_no_relaunch_when_the_qe_is_out_of_date() -> None:
    qe_levels = [_module_level(9, "UpToDate"), _module_level(4, "OutOfDate")]
    status, _ = evaluate(_relaunch_info(), td((3, 1, 2), svn2=(6, 1, 4)), qe_levels)
    assert status is S.OUT_OF_DATE
