"""TCB evaluation, Intel QVL style (TcbLevelCheck, TdxModuleCheck, TDRelaunchCheck, QE identity).

Levels are tried in the order Intel lists them (newest first); the first that the platform
meets wins. Statuses of the platform, the TDX module and the QE are then converged into one.
"""

from __future__ import annotations

from dataclasses import dataclass

from cllm.errors import VerificationError
from cllm.quote import EnclaveReport, PckExtensions, TdReport
from cllm.verify._collateral import QeIdentity, TcbInfo, TcbLevel, TdxModule
from cllm.verify._status import TcbStatus

__all__ = ["LevelMatch", "combine", "match_platform_level", "match_qe_identity", "match_tdx_module"]

S = TcbStatus
_CONFIGURATION_NEEDED = (S.CONFIGURATION_NEEDED, S.CONFIGURATION_AND_SW_HARDENING_NEEDED)
_NO_CONFIGURATION_NEEDED = (S.UP_TO_DATE, S.SW_HARDENING_NEEDED)


@dataclass(frozen=True, slots=True)
class LevelMatch:
    status: TcbStatus
    advisory_ids: tuple[str, ...]
    index: int  # position of the matched level in its list


def _tdx_components_met(level: TcbLevel, tee_tcb_svn: bytes) -> bool:
    components = level.tcb.tdxtcbcomponents
    if components is None:
        return False
    # Intel QVL skips the TDX module's own SVNs (indices 0, 1) for TDX module 1.5+; they are
    # judged by the TDX module identity instead.
    start = 2 if tee_tcb_svn[1] > 0 else 0
    return all(tee_tcb_svn[i] >= components[i].svn for i in range(start, 16))


def match_platform_level(
    info: TcbInfo, pck: PckExtensions, body: TdReport | EnclaveReport
) -> LevelMatch:
    for index, level in enumerate(info.tcb_levels):
        sgx = level.tcb.sgxtcbcomponents
        if pck.pce_svn < level.tcb.pcesvn:
            continue
        if any(pck.tcb_components[i] < sgx[i].svn for i in range(16)):
            continue
        if isinstance(body, TdReport) and not _tdx_components_met(level, body.tee_tcb_svn):
            continue
        return LevelMatch(level.tcb_status, level.advisory_ids, index)
    raise VerificationError(
        "no TCB level in the TCB info matches the platform (TCB not supported)",
        code="tcb_not_supported",
    )


def _check_module_identity(module: TdxModule, body: TdReport, what: str) -> None:
    if body.mr_signer_seam != bytes.fromhex(module.mrsigner):
        raise VerificationError(
            f"MRSIGNERSEAM does not match the {what} signer", code="tdx_module_mismatch"
        )
    mask = int(module.attributes_mask, 16)
    seam_attributes = int.from_bytes(body.seam_attributes, "big")
    if seam_attributes & mask != int(module.attributes, 16) & mask:
        raise VerificationError(
            f"SEAMATTRIBUTES do not match the {what} attributes", code="tdx_module_mismatch"
        )


def match_tdx_module(info: TcbInfo, body: TdReport) -> LevelMatch | None:
    """Match the TDX module identity; ``None`` when the TCB info has no module levels for it."""
    if info.tdx_module is None:
        raise VerificationError("TDX TCB info has no tdxModule", code="collateral_format")
    isv_svn, major = body.tee_tcb_svn[0], body.tee_tcb_svn[1]
    if major == 0 or not info.tdx_module_identities:
        _check_module_identity(info.tdx_module, body, "TCB info TDX module")
        return None
    module_id = f"TDX_{major:02X}"
    identity = next((m for m in info.tdx_module_identities if m.id == module_id), None)
    if identity is None:
        raise VerificationError(
            f"TCB info has no TDX module identity {module_id}", code="tdx_module_mismatch"
        )
    _check_module_identity(identity, body, f"TDX module identity {module_id}")
    for index, level in enumerate(identity.tcb_levels):
        if isv_svn >= level.tcb.isvsvn:
            return LevelMatch(level.tcb_status, level.advisory_ids, index)
    raise VerificationError(
        f"no {module_id} TCB level matches TDX module SVN {isv_svn}", code="tcb_not_supported"
    )


def match_qe_identity(identity: QeIdentity, qe: EnclaveReport) -> LevelMatch:
    misc_mask = int(identity.miscselect_mask, 16)
    if qe.misc_select & misc_mask != int(identity.miscselect, 16) & misc_mask:
        raise VerificationError("QE MISCSELECT does not match", code="qe_identity_mismatch")
    attr_mask = int(identity.attributes_mask, 16)
    if int.from_bytes(qe.attributes, "big") & attr_mask != int(identity.attributes, 16) & attr_mask:
        raise VerificationError("QE ATTRIBUTES do not match", code="qe_identity_mismatch")
    if qe.mr_signer != bytes.fromhex(identity.mrsigner):
        raise VerificationError("QE MRSIGNER does not match", code="qe_identity_mismatch")
    if qe.isv_prod_id != identity.isvprodid:
        raise VerificationError("QE ISVPRODID does not match", code="qe_identity_mismatch")
    for index, level in enumerate(identity.tcb_levels):
        if qe.isv_svn >= level.tcb.isvsvn:
            return LevelMatch(level.tcb_status, level.advisory_ids, index)
    # Intel QVL: a QE older than every listed level is revoked.
    return LevelMatch(S.REVOKED, (), len(identity.tcb_levels))


def _converge(status: TcbStatus, other: TcbStatus) -> TcbStatus:
    """Fold a component status (TDX module or QE) into the platform status."""
    if other is S.REVOKED:
        return S.REVOKED
    if other is S.OUT_OF_DATE:
        if status in _NO_CONFIGURATION_NEEDED:
            return S.OUT_OF_DATE
        if status in _CONFIGURATION_NEEDED:
            return S.OUT_OF_DATE_CONFIGURATION_NEEDED
    return status


def combine(
    *,
    tcb_info: TcbInfo,
    body: TdReport | EnclaveReport,
    platform: LevelMatch,
    module: LevelMatch | None,
    qe: LevelMatch,
) -> tuple[TcbStatus, tuple[str, ...]]:
    status = platform.status
    advisories = set(platform.advisory_ids)
    if module is not None:
        status = _converge(status, module.status)
        advisories.update(module.advisory_ids)
    status = _converge(status, qe.status)
    advisories.update(qe.advisory_ids)
    return status, tuple(sorted(advisories))
