"""Parsed quote structures: frozen dataclasses holding raw bytes in quote byte order."""

from __future__ import annotations

from dataclasses import dataclass

from cllm.quote import _layout as L

__all__ = [
    "CertificationData",
    "EnclaveReport",
    "Quote",
    "QuoteHeader",
    "QuoteSignatureData",
    "TdReport",
]


@dataclass(frozen=True, slots=True)
class QuoteHeader:
    version: int
    attestation_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes


@dataclass(frozen=True, slots=True)
class EnclaveReport:
    """SGX REPORT body: the application enclave of an SGX quote, or the QE report."""

    cpu_svn: bytes
    misc_select: int
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int
    isv_svn: int
    report_data: bytes
    raw: bytes

    @property
    def debug(self) -> bool:
        return bool(self.attributes[0] & 0x02)


@dataclass(frozen=True, slots=True)
class TdReport:
    """TD report 1.0 (quote v4, v5 body type 2) or 1.5 (v5 body type 3)."""

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mrtd: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn2: bytes | None  # TD report 1.5 only
    mr_servicetd: bytes | None  # TD report 1.5 only

    @property
    def is_td_report_15(self) -> bool:
        return self.mr_servicetd is not None

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        return (self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3)

    def _td_attribute(self, bit: int) -> bool:
        return bool(int.from_bytes(self.td_attributes, "little") >> bit & 1)

    @property
    def debug(self) -> bool:
        return self._td_attribute(L.TD_ATTR_DEBUG_BIT)

    @property
    def sept_ve_disable(self) -> bool:
        return self._td_attribute(L.TD_ATTR_SEPT_VE_DISABLE_BIT)

    @property
    def mr_servicetd_zero(self) -> bool:
        """True when no service TD is bound (TD report 1.0 has no such field)."""
        return self.mr_servicetd is None or not any(self.mr_servicetd)


@dataclass(frozen=True, slots=True)
class CertificationData:
    """Certification data: ``type`` per QuoteConstants.h; ``data`` uninterpreted."""

    type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class QuoteSignatureData:
    """ECDSA-256 quote auth data (v3 layout, or v4/v5 with the type-6 QE report wrapper)."""

    signature: bytes
    attestation_key: bytes
    qe_report: EnclaveReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification: CertificationData


@dataclass(frozen=True, slots=True)
class Quote:
    header: QuoteHeader
    body_type: int
    body: TdReport | EnclaveReport
    signature_data: QuoteSignatureData
    signed_data: bytes
    """header || body (v5: including the body descriptor): what the attestation key signs."""
    body_offset: int
    signature_data_offset: int
    """Offset of the first byte after the u32 ``signature_data_len``."""
    length: int
    """Length of the quote proper; input beyond it is ``trailing_bytes``."""
    trailing_bytes: int

    @property
    def version(self) -> int:
        return self.header.version

    @property
    def is_tdx(self) -> bool:
        return isinstance(self.body, TdReport)

    @property
    def td_report(self) -> TdReport:
        if not isinstance(self.body, TdReport):
            raise TypeError("not a TDX quote")
        return self.body

    @property
    def enclave_report(self) -> EnclaveReport:
        if not isinstance(self.body, EnclaveReport):
            raise TypeError("not an SGX quote")
        return self.body
