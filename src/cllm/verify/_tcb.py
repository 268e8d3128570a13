"""TCB evaluation as Intel's QVL does it (TcbLevelCheck, TdxModuleCheck, TDRelaunchCheck,
EnclaveReportVerifier), returning cllm's typed results.

TCB levels are tried in the order Intel lists them (newest first); the first one the platform
meets wins. The platform, TDX module and QE statuses are then converged into one status.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

from cllm.errors import VerificationError
from cllm.quote import EnclaveReport, PckExtensions, TdReport
from cllm.verify._intel_json import QeIdentity, TcbInfo, TcbLevel, TdxModuleIdentity
from cllm.verify._status import TcbStatus

__all__ = [
    "LevelMatch",
    "ModuleMatch",
    "PlatformMatch",
    "combine",
    "match_platform",
    "match_qe_identity",
    "match_tdx_module",
]

S = TcbStatus
_CONFIGURATION_NEEDED = frozenset(
    {
        S.CONFIGURATION_NEEDED,
        S.OUT_OF_DATE_CONFIGURATION_NEEDED,
        S.CONFIGURATION_AND_SW_HARDENING_NEEDED,
        S.TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
    }
)
_NOT_OUT_OF_DATE = frozenset(
    {
        S.UP_TO_DATE,
        S.SW_HARDENING_NEEDED,
        S.CONFIGURATION_NEEDED,
        S.CONFIGURATION_AND_SW_HARDENING_NEEDED,
    }
)


@dataclass(frozen=True, slots=True)
class LevelMatch:
    status: TcbStatus
    advisory_ids: tuple[str, ...]
    index: int  # position of the matched level in its list


@dataclass(frozen=True, slots=True)
class PlatformMatch:
    sgx: LevelMatch  # first level the SGX components and PCESVN meet
    tdx: LevelMatch | None  # TDX quotes: first level that also meets the TDX components

    @property
    def level(self) -> LevelMatch:
        return self.tdx if self.tdx is not None else self.sgx


@dataclass(frozen=True, slots=True)
class ModuleMatch:
    identity: TdxModuleIdentity | None  # None: TDX module 1.0 judged by tcbInfo.tdxModule
    level: LevelMatch | None


def _not_supported(message: str) -> VerificationError:
    return VerificationError(message, code="tcb_not_supported")


def _tdx_components_met(level: TcbLevel, tee_tcb_svn: bytes) -> bool:
    required = level.tdx_svns
    if required is None:
        return False
    # From TDX module 1.5 on (TEE_TCB_SVN[1] > 0) the module's own SVNs (indices 0, 1) are
    # judged by the TDX module identity, not by the platform level.
    start = 2 if tee_tcb_svn[1] > 0 else 0
    return all(map(operator.ge, tee_tcb_svn[start:], required[start:]))


def match_platform(
    info: TcbInfo, pck: PckExtensions, body: TdReport | EnclaveReport
) -> PlatformMatch:
    sgx: LevelMatch | None = None
    for index, level in enumerate(info.tcb_levels):
        if pck.pce_svn < level.tcb.pcesvn:
            continue
        if not all(map(operator.ge, pck.tcb_components, level.sgx_svns)):
            continue
        match = LevelMatch(level.tcb_status, level.advisory_ids, index)
        if not isinstance(body, TdReport):
            return PlatformMatch(sgx=match, tdx=None)
        sgx = sgx or match
        if _tdx_components_met(level, body.tee_tcb_svn):
            return PlatformMatch(sgx=sgx, tdx=match)
    if sgx is None:
        raise _not_supported("no TCB level matches the platform's SGX components and PCESVN")
    raise _not_supported("no TCB level matches the TD's TEE_TCB_SVN")


def _find_module_identity(info: TcbInfo, version: int) -> TdxModuleIdentity:
    module_id = f"TDX_{version:02X}"
    for identity in info.tdx_module_identities or ():
        if identity.id.upper() == module_id:
            return identity
    raise VerificationError(
        f"TCB info has no TDX module identity {module_id}", code="tdx_module_mismatch"
    )


def match_tdx_module(info: TcbInfo, body: TdReport) -> ModuleMatch:
    """Check MRSIGNERSEAM/SEAMATTRIBUTES and find the TDX module's TCB level."""
    if info.tdx_module is None:  # parse_tcb_info rejects such TDX TCB info
        raise VerificationError("TDX TCB info has no tdxModule", code="collateral_mismatch")
    isv_svn, version = body.tee_tcb_svn[0], body.tee_tcb_svn[1]
    identity = _find_module_identity(info, version) if version > 0 else None
    expected = identity or info.tdx_module
    if body.mr_signer_seam != bytes.fromhex(expected.mrsigner):
        raise VerificationError(
            "MRSIGNERSEAM does not match the TDX module signer", code="tdx_module_mismatch"
        )
    # Intel QVL requires SEAMATTRIBUTES to be all zero and equal to the listed attributes.
    if any(body.seam_attributes) or body.seam_attributes != bytes.fromhex(expected.attributes):
        raise VerificationError(
            "SEAMATTRIBUTES are not zero or do not match the TDX module",
            code="tdx_module_mismatch",
        )
    if identity is None:
        return ModuleMatch(identity=None, level=None)
    for index, level in enumerate(identity.tcb_levels):
        if isv_svn >= level.tcb.isvsvn:
            return ModuleMatch(identity, LevelMatch(level.tcb_status, level.advisory_ids, index))
    raise _not_supported(f"no {identity.id} TCB level matches TDX module SVN {isv_svn}")


def match_qe_identity(identity: QeIdentity, qe: EnclaveReport) -> LevelMatch:
    misc = int.from_bytes(bytes.fromhex(identity.miscselect), "little")
    misc_mask = int.from_bytes(bytes.fromhex(identity.miscselect_mask), "little")
    if qe.misc_select & misc_mask != misc:
        raise VerificationError("QE MISCSELECT does not match", code="qe_identity_mismatch")
    attr_mask = bytes.fromhex(identity.attributes_mask)
    masked = bytes(a & m for a, m in zip(qe.attributes, attr_mask, strict=True))
    if masked != bytes.fromhex(identity.attributes):
        raise VerificationError("QE ATTRIBUTES do not match", code="qe_identity_mismatch")
    if qe.mr_signer != bytes.fromhex(identity.mrsigner):
        raise VerificationError("QE MRSIGNER does not match", code="qe_identity_mismatch")
    if qe.isv_prod_id != identity.isvprodid:
        raise VerificationError("QE ISVPRODID does not match", code="qe_identity_mismatch")
    for index, level in enumerate(identity.tcb_levels):
        if qe.isv_svn >= level.tcb.isvsvn:
            return LevelMatch(level.tcb_status, level.advisory_ids, index)
    raise _not_supported(f"no QE identity TCB level matches QE ISVSVN {qe.isv_svn}")


def _qe_class(status: TcbStatus) -> TcbStatus:
    """EnclaveReportVerifier: a QE level is UpToDate, Revoked, or else OutOfDate."""
    return status if status in (S.UP_TO_DATE, S.REVOKED) else S.OUT_OF_DATE


def _converge(status: TcbStatus, component: TcbStatus) -> TcbStatus:
    """Fold a TDX module or QE status into the platform status (Intel's converge functions)."""
    if component is S.OUT_OF_DATE:
        if status in (S.UP_TO_DATE, S.SW_HARDENING_NEEDED):
            return S.OUT_OF_DATE
        if status in (S.CONFIGURATION_NEEDED, S.CONFIGURATION_AND_SW_HARDENING_NEEDED):
            return S.OUT_OF_DATE_CONFIGURATION_NEEDED
    if component is S.REVOKED:
        return S.REVOKED
    return status


def _relaunch(
    info: TcbInfo,
    tee_tcb_svn2: bytes,
    *,
    sgx_status: TcbStatus,
    tdx_status: TcbStatus,
    module_status: TcbStatus | None,
    qe_status: TcbStatus,
) -> TcbStatus:
    """TDRelaunchCheck: an out-of-date TD whose SEAM already runs the latest TCB should
    relaunch rather than be treated as out of date (TD report 1.5 only)."""
    if (
        qe_status is not S.UP_TO_DATE
        or sgx_status not in _NOT_OUT_OF_DATE
        or tdx_status not in (S.OUT_OF_DATE, S.OUT_OF_DATE_CONFIGURATION_NEEDED)
        or module_status is not S.OUT_OF_DATE
    ):
        return tdx_status
    latest = info.tcb_levels[0].tcb.tdxtcbcomponents
    assert latest is not None  # parse_tcb_info guarantees TDX levels carry them
    if tee_tcb_svn2[1] == 0:
        latest_module_svn = latest[0].svn
    else:
        module_levels = _find_module_identity(info, tee_tcb_svn2[1]).tcb_levels
        if not module_levels:
            raise _not_supported("TDX module identity has no TCB levels")
        latest_module_svn = module_levels[0].tcb.isvsvn
    if tee_tcb_svn2[0] >= latest_module_svn and tee_tcb_svn2[2] >= latest[2].svn:
        if sgx_status in _CONFIGURATION_NEEDED or tdx_status in _CONFIGURATION_NEEDED:
            return S.TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED
        return S.TD_RELAUNCH_ADVISED
    return tdx_status


def combine(
    *,
    tcb_info: TcbInfo,
    body: TdReport | EnclaveReport,
    platform: PlatformMatch,
    module: ModuleMatch | None,
    qe: LevelMatch,
) -> tuple[TcbStatus, tuple[str, ...]]:
    """The combined TCB status and the advisory IDs of every matched level."""
    qe_status = _qe_class(qe.status)
    advisories = set(platform.level.advisory_ids) | set(qe.advisory_ids)
    if not isinstance(body, TdReport):
        return _converge(platform.sgx.status, qe_status), tuple(sorted(advisories))
    module_level = module.level if module is not None else None
    module_status = module_level.status if module_level is not None else None
    status = platform.level.status
    if module_level is not None:
        advisories.update(module_level.advisory_ids)
        status = _converge(status, module_status or S.UP_TO_DATE)
    if status is S.REVOKED:
        return status, tuple(sorted(advisories))
    if body.tee_tcb_svn2 is not None:
        status = _relaunch(
            tcb_info,
            body.tee_tcb_svn2,
            sgx_status=platform.sgx.status,
            tdx_status=status,
            module_status=module_status,
            qe_status=qe_status,
        )
    return _converge(status, qe_status), tuple(sorted(advisories))
