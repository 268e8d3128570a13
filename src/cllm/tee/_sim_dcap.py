"""A simulated Intel DCAP world: its own PKI, collateral and byte-exact TDX quotes.

Why it exists: the verifier must be testable without the real-hardware corpus, and machines
without TDX still need evidence the whole stack can process (the ``simulated`` TEE backend). The
quotes and collateral built here have exactly Intel's formats, so ``QuoteVerifier`` runs its full
DCAP path on them: PCK chain, CRLs, signed TCB info and QE identity, QE report, quote signature,
TCB levels.

It can never pass as Intel: everything chains to "cllm Simulated SGX Root CA" (a key derived from
the caller's seed, never Intel's), and quotes carry a QE vendor ID of their own, which the Intel
trust root rejects. A verifier trusts this world only when given ``trust_root()`` explicitly.

Everything is a function of the seed and the parameters: keys, serial numbers, validity windows
and, where OpenSSL supports RFC 6979, the ECDSA signatures - so two processes started with the
same seed agree on the root certificate byte for byte.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from cllm.quote import (
    CertificationData,
    EnclaveReport,
    PckExtensions,
    QuoteHeader,
    QuoteSignatureData,
    TdReport,
    encode_enclave_report,
    encode_quote,
    encode_sgx_extension,
    encode_signed_data,
)
from cllm.quote import layout as L
from cllm.verify import (
    SIMULATED_QE_VENDOR_ID,
    SIMULATED_ROOT_CA_NAME,
    TCB_SIGNER_EXTENSION_OID,
    Collateral,
    IsvTcb,
    IsvTcbLevel,
    QeIdentity,
    Tcb,
    TcbComponent,
    TcbInfo,
    TcbLevel,
    TcbSigner,
    TcbStatus,
    TdxModule,
    TdxModuleIdentity,
    TrustRoot,
    encode_qe_identity,
    encode_tcb_info,
)

__all__ = [
    "DEFAULT_QE_LEVELS",
    "DEFAULT_TCB_LEVELS",
    "DEFAULT_TDX_MODULE_IDENTITIES",
    "SIMULATED_QE_VENDOR_ID",
    "SIMULATED_ROOT_CA_NAME",
    "CollateralParams",
    "IsvSvnLevel",
    "PlatformTcbLevel",
    "SimulatedDcap",
    "SimulatedPlatform",
    "SimulatedQe",
    "SimulatedTd",
    "TdxModuleIdentityParams",
]

_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_SGX_EXTENSION_OID: Final = "1.2.840.113741.1.13.1"
_ORGANIZATION: Final = "cllm simulation (not Intel)"
_QE_AUTH_DATA: Final = bytes(range(32))  # what most real TD quoting enclaves send
_QE_ATTRIBUTES_MASK: Final = bytes.fromhex("fbffffffffffffff0000000000000000")  # Intel's TD_QE mask
_TCB_DATE: Final = datetime(2024, 3, 13, tzinfo=UTC)
_OLD_TCB_DATE: Final = datetime(2023, 8, 9, tzinfo=UTC)


# -- parameters ----------------------------------------------------------------------------


def _svns(*values: int) -> tuple[int, ...]:
    return (*values, *([0] * (16 - len(values))))


@dataclass(frozen=True, slots=True)
class SimulatedPlatform:
    """The simulated machine: what its PCK certificate and its TD reports say about its TCB.

    The defaults meet the first (UpToDate) level of ``DEFAULT_TCB_LEVELS`` and the TDX_01
    module identity: a TDX module 1.5 (TEE_TCB_SVN[1] = 1) at SVN 4.
    """

    fmspc: bytes = bytes.fromhex("c11a51000000")
    pce_id: bytes = bytes(2)
    sgx_tcb_components: tuple[int, ...] = _svns(7, 7, 2, 2, 3, 1, 0, 3)
    pce_svn: int = 11
    tee_tcb_svn: bytes = bytes(_svns(4, 1, 7))
    tee_tcb_svn2: bytes | None = None  # TD report 1.5; None: same as tee_tcb_svn
    mr_signer_seam: bytes = bytes(48)  # Intel's TDX module signer is all zero, too
    sgx_type: int = 0  # 0 standard, 1 scalable, 2 scalable with integrity
    platform_instance_id: bytes | None = None  # .6, multi-package platforms only
    dynamic_platform: bool = True
    cached_keys: bool = False
    smt_enabled: bool = True

    @property
    def cpu_svn(self) -> bytes:
        # On real platforms CPUSVN is the SGX TCB component SVNs, byte for byte.
        return bytes(self.sgx_tcb_components)


@dataclass(frozen=True, slots=True)
class SimulatedQe:
    """The simulated TD quoting enclave; MRSIGNER and MRENCLAVE are derived from the seed."""

    isv_prod_id: int = 2
    isv_svn: int = 4
    misc_select: int = 0
    attributes: bytes = bytes.fromhex("1100000000000000e700000000000000")


@dataclass(frozen=True, slots=True)
class SimulatedTd:
    """The TD's own TD report fields (the TCB fields come from ``SimulatedPlatform``)."""

    mrtd: bytes = bytes(48)
    rtmr0: bytes = bytes(48)
    rtmr1: bytes = bytes(48)
    rtmr2: bytes = bytes(48)
    rtmr3: bytes = bytes(48)
    mr_config_id: bytes = bytes(48)
    mr_owner: bytes = bytes(48)
    mr_owner_config: bytes = bytes(48)
    td_attributes: bytes = (1 << L.TD_ATTR_SEPT_VE_DISABLE_BIT).to_bytes(8, "little")
    xfam: bytes = bytes.fromhex("e700060000000000")
    mr_servicetd: bytes = bytes(48)  # TD report 1.5 only


@dataclass(frozen=True, slots=True)
class PlatformTcbLevel:
    """One entry of the TCB info's ``tcbLevels``."""

    sgx_tcb_components: tuple[int, ...]
    pce_svn: int
    tdx_tcb_components: tuple[int, ...]
    status: TcbStatus
    tcb_date: datetime = _TCB_DATE
    advisory_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IsvSvnLevel:
    """One TCB level of a TDX module identity or of the QE identity."""

    isv_svn: int
    status: TcbStatus
    tcb_date: datetime = _TCB_DATE
    advisory_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TdxModuleIdentityParams:
    id: str  # "TDX_%02X" of the module major version, TEE_TCB_SVN[1]
    tcb_levels: tuple[IsvSvnLevel, ...]


DEFAULT_TCB_LEVELS: Final = (
    PlatformTcbLevel(_svns(7, 7, 2, 2, 3, 1, 0, 3), 11, _svns(4, 1, 7), TcbStatus.UP_TO_DATE),
    PlatformTcbLevel(
        _svns(6, 6, 2, 2, 3, 1, 0, 3),
        11,
        _svns(2, 1, 6),
        TcbStatus.OUT_OF_DATE,
        _OLD_TCB_DATE,
        ("CLLM-SIM-SA-00001",),
    ),
)
DEFAULT_TDX_MODULE_IDENTITIES: Final = (
    TdxModuleIdentityParams("TDX_03", (IsvSvnLevel(3, TcbStatus.UP_TO_DATE),)),
    TdxModuleIdentityParams(
        "TDX_01",
        (
            IsvSvnLevel(4, TcbStatus.UP_TO_DATE),
            IsvSvnLevel(2, TcbStatus.OUT_OF_DATE, _OLD_TCB_DATE, ("CLLM-SIM-SA-00002",)),
        ),
    ),
)
DEFAULT_QE_LEVELS: Final = (
    IsvSvnLevel(4, TcbStatus.UP_TO_DATE),
    IsvSvnLevel(2, TcbStatus.OUT_OF_DATE, _OLD_TCB_DATE, ("CLLM-SIM-SA-00003",)),
)


@dataclass(frozen=True, slots=True)
class CollateralParams:
    """What the simulated PCS publishes. Dates left ``None`` default to the certificates'
    validity window; CRL dates default to the TCB info / QE identity dates."""

    tcb_levels: tuple[PlatformTcbLevel, ...] = DEFAULT_TCB_LEVELS
    tdx_module_identities: tuple[TdxModuleIdentityParams, ...] = DEFAULT_TDX_MODULE_IDENTITIES
    qe_levels: tuple[IsvSvnLevel, ...] = DEFAULT_QE_LEVELS
    issue_date: datetime | None = None
    next_update: datetime | None = None
    crl_this_update: datetime | None = None
    crl_next_update: datetime | None = None  # the CRL is stale from this second on
    revoked_pck_serials: tuple[int, ...] = ()  # listed in the PCK CRL
    revoked_ca_serials: tuple[int, ...] = ()  # listed in the root CA CRL
    tcb_evaluation_data_number: int = 17
    # Overrides that make the collateral describe another machine, to test mismatches.
    fmspc: bytes | None = None  # None: the platform's
    qe: SimulatedQe | None = None  # None: the simulated QE


# -- helpers -------------------------------------------------------------------------------


@functools.cache
def _deterministic_ecdsa() -> bool:
    """RFC 6979 signatures need OpenSSL 3.2+; without it the output is valid but varies."""
    try:
        key = ec.derive_private_key(1, ec.SECP256R1())
        key.sign(b"", ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    except UnsupportedAlgorithm:
        return False
    return True


def _ecdsa() -> ec.ECDSA:
    return ec.ECDSA(hashes.SHA256(), deterministic_signing=_deterministic_ecdsa())


def _sign_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-P256-SHA256 as DCAP encodes it: raw r || s, 32 bytes each."""
    r, s = decode_dss_signature(key.sign(data, _ecdsa()))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _raw_public_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return point[1:]  # drop the 0x04 prefix: DCAP carries x || y


def _whole_seconds(moment: datetime, what: str) -> datetime:
    # X.509 and Intel's JSON carry seconds; a sub-second bound would silently move.
    if moment.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware")
    if moment.microsecond:
        raise ValueError(f"{what} must be a whole second")
    return moment.astimezone(UTC)


def _pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(Encoding.PEM) for cert in certs)


def _sgx_extension(platform: SimulatedPlatform, ppid: bytes) -> bytes:
    """The PCK certificate's SGX extension for this platform."""
    if len(platform.sgx_tcb_components) != 16:
        raise ValueError("sgx_tcb_components must list 16 SVNs")
    return encode_sgx_extension(
        PckExtensions(
            ppid=ppid,
            tcb_components=platform.sgx_tcb_components,
            pce_svn=platform.pce_svn,
            cpu_svn=platform.cpu_svn,
            pce_id=platform.pce_id,
            fmspc=platform.fmspc,
            sgx_type=platform.sgx_type,
            platform_instance_id=platform.platform_instance_id,
            dynamic_platform=platform.dynamic_platform,
            cached_keys=platform.cached_keys,
            smt_enabled=platform.smt_enabled,
        )
    )


# -- the simulated world -------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
        ]
    )


_CA_KEY_USAGE: Final = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
# Intel's PCK and TCB Signing leaves: digitalSignature + nonRepudiation.
_LEAF_KEY_USAGE: Final = x509.KeyUsage(
    digital_signature=True,
    content_commitment=True,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True, slots=True)
class _Issuer:
    """An issuer known by name and key before its own certificate exists."""

    name: x509.Name
    key: ec.EllipticCurvePrivateKey


class SimulatedDcap:
    """A simulated Intel PCS + TDX platform, derived from a seed.

    Holds a root CA, a PCK Platform CA, the platform's PCK certificate, a TCB Signing
    certificate (all valid ``not_before`` .. ``not_after``), the attestation key and the QE
    identity. ``collateral()`` publishes CRLs, TCB info and QE identity; ``quote()`` produces
    TDX quotes that verify under ``trust_root()`` - and under no other root.
    """

    def __init__(
        self,
        seed: bytes,
        *,
        not_before: datetime,
        not_after: datetime,
        platform: SimulatedPlatform | None = None,
        qe: SimulatedQe | None = None,
    ) -> None:
        self.not_before = _whole_seconds(not_before, "not_before")
        self.not_after = _whole_seconds(not_after, "not_after")
        if self.not_before >= self.not_after:
            raise ValueError("not_before must be earlier than not_after")
        self.platform = platform or SimulatedPlatform()
        self.qe = qe or SimulatedQe()
        self._seed = bytes(seed)
        self.qe_vendor_id = SIMULATED_QE_VENDOR_ID

        self._root_key = self._key(b"root-ca")
        self._pck_ca_key = self._key(b"pck-platform-ca")
        self._pck_key = self._key(b"pck-leaf")
        self._tcb_signing_key = self._key(b"tcb-signing")
        self._attestation_key = self._key(b"attestation-key")

        # The TCB Signing certificate is made first (it needs only the root's name and key) so
        # that the root can pin it: a verifier given this root accepts collateral signed by
        # exactly that certificate's subject and key, as Intel's root pins Intel's.
        root_issuer = _Issuer(_name(SIMULATED_ROOT_CA_NAME), self._root_key)
        self.tcb_signing_certificate = self._certificate(
            self._tcb_signing_key, "cllm Simulated SGX TCB Signing", issuer=root_issuer
        )
        self.root_certificate = self._certificate(
            self._root_key,
            SIMULATED_ROOT_CA_NAME,
            issuer=None,
            path_length=1,
            pinned_tcb_signer=self.tcb_signing_certificate,
        )
        self.pck_ca_certificate = self._certificate(
            self._pck_ca_key,
            "cllm Simulated SGX PCK Platform CA",  # dcap tools read "Platform" from the CN
            issuer=(self.root_certificate, self._root_key),
            path_length=0,
        )
        self.pck_certificate = self._certificate(
            self._pck_key,
            "cllm Simulated SGX PCK Certificate",
            issuer=(self.pck_ca_certificate, self._pck_ca_key),
            sgx_extension=_sgx_extension(self.platform, self._derive(b"ppid")[:16]),
        )

        self.mr_seam = hashlib.sha384(self._derive(b"mrseam")).digest()  # the TDX module's hash
        self.qe_mr_signer = self._derive(b"qe-mrsigner")
        self.qe_mr_enclave = self._derive(b"qe-mrenclave")
        self._qe_report, self._qe_report_signature = self._sign_qe_report()

    @classmethod
    def from_seed(
        cls,
        seed: bytes,
        *,
        not_before: datetime,
        not_after: datetime,
        platform: SimulatedPlatform | None = None,
        qe: SimulatedQe | None = None,
    ) -> SimulatedDcap:
        return cls(seed, not_before=not_before, not_after=not_after, platform=platform, qe=qe)

    # -- derivation --------------------------------------------------------------------

    def _derive(self, label: bytes) -> bytes:
        # Labels are fixed ASCII without NUL, so label || NUL || seed is unambiguous.
        return hashlib.sha256(b"cllm.sim_dcap/" + label + b"\0" + self._seed).digest()

    def _key(self, label: bytes) -> ec.EllipticCurvePrivateKey:
        scalar = int.from_bytes(self._derive(b"key/" + label), "big") % (_P256_ORDER - 1) + 1
        return ec.derive_private_key(scalar, ec.SECP256R1())

    def _serial(self, label: str) -> int:
        # 128 bits, positive and odd (so never zero): well inside RFC 5280's 20 octets.
        return int.from_bytes(self._derive(b"serial/" + label.encode())[:16], "big") | 1

    def _certificate(
        self,
        key: ec.EllipticCurvePrivateKey,
        common_name: str,
        *,
        issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | _Issuer | None,
        path_length: int | None = None,
        sgx_extension: bytes | None = None,
        pinned_tcb_signer: x509.Certificate | None = None,
    ) -> x509.Certificate:
        """A CA certificate when ``path_length`` is given, else a leaf; self-signed without
        ``issuer``. Extensions follow Intel's certificates and satisfy the Web PKI profile the
        verifier's chain checks apply."""
        subject = _name(common_name)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        if issuer is None:
            issuer_name, signing_key, aki = subject, key, ski
        elif isinstance(issuer, _Issuer):
            issuer_name, signing_key = issuer.name, issuer.key
            aki = x509.SubjectKeyIdentifier.from_public_key(issuer.key.public_key())
        else:
            issuer_cert, signing_key = issuer
            issuer_name = issuer_cert.subject
            aki = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        is_ca = path_length is not None
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(self._serial(common_name))
            .not_valid_before(self.not_before)
            .not_valid_after(self.not_after)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(aki), critical=False
            )
            .add_extension(ski, critical=False)
            .add_extension(_CA_KEY_USAGE if is_ca else _LEAF_KEY_USAGE, critical=True)
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length), critical=True)
        )
        if pinned_tcb_signer is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(
                    TCB_SIGNER_EXTENSION_OID, pinned_tcb_signer.public_bytes(Encoding.DER)
                ),
                critical=False,
            )
        if sgx_extension is not None:
            oid = x509.ObjectIdentifier(_SGX_EXTENSION_OID)
            builder = builder.add_extension(
                x509.UnrecognizedExtension(oid, sgx_extension), critical=False
            )
        return builder.sign(
            signing_key, hashes.SHA256(), ecdsa_deterministic=_deterministic_ecdsa()
        )

    # -- trust -------------------------------------------------------------------------

    def root_ca_pem(self) -> bytes:
        return self.root_certificate.public_bytes(Encoding.PEM)

    def trust_root(self) -> TrustRoot:
        """The root a verifier must be given, explicitly, to accept this world's quotes."""
        return TrustRoot(
            certificate=self.root_certificate,
            name=SIMULATED_ROOT_CA_NAME,
            qe_vendor_id=self.qe_vendor_id,
            is_intel_production=False,
            tcb_signer=TcbSigner.of(self.tcb_signing_certificate),
        )

    def pck_chain_pem(self) -> bytes:
        """PCK leaf || PCK Platform CA || root, as certification data type 5 carries it."""
        return _pem((self.pck_certificate, self.pck_ca_certificate, self.root_certificate))

    # -- collateral --------------------------------------------------------------------

    def collateral(self, params: CollateralParams | None = None) -> Collateral:
        p = params or CollateralParams()
        issue = _whole_seconds(p.issue_date or self.not_before, "issue_date")
        next_update = _whole_seconds(p.next_update or self.not_after, "next_update")
        crl_this = _whole_seconds(p.crl_this_update or issue, "crl_this_update")
        crl_next = _whole_seconds(p.crl_next_update or next_update, "crl_next_update")
        tcb_info = self._tcb_info_json(p, issue, next_update)
        qe_identity = self._qe_identity_json(p, issue, next_update)
        signing_chain = _pem((self.tcb_signing_certificate, self.root_certificate)).decode()
        return Collateral(
            pck_crl_issuer_chain=_pem((self.pck_ca_certificate, self.root_certificate)).decode(),
            root_ca_crl=self._crl(
                self.root_certificate, self._root_key, p.revoked_ca_serials, crl_this, crl_next
            ),
            pck_crl=self._crl(
                self.pck_ca_certificate,
                self._pck_ca_key,
                p.revoked_pck_serials,
                crl_this,
                crl_next,
            ),
            tcb_info_issuer_chain=signing_chain,
            tcb_info=tcb_info,
            tcb_info_signature=_sign_raw(self._tcb_signing_key, tcb_info),
            qe_identity_issuer_chain=signing_chain,
            qe_identity=qe_identity,
            qe_identity_signature=_sign_raw(self._tcb_signing_key, qe_identity),
        )

    def _crl(
        self,
        issuer: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        revoked: tuple[int, ...],
        this_update: datetime,
        next_update: datetime,
    ) -> bytes:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject)
            .last_update(this_update)
            .next_update(next_update)
            .add_extension(x509.CRLNumber(1), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
        )
        for serial in sorted(set(revoked)):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(this_update)
                .build()
            )
        crl = builder.sign(key, hashes.SHA256(), ecdsa_deterministic=_deterministic_ecdsa())
        return crl.public_bytes(Encoding.DER)

    def _tcb_info_json(self, p: CollateralParams, issue: datetime, next_update: datetime) -> bytes:
        module = TdxModule(
            mrsigner=self.platform.mr_signer_seam.hex().upper(),
            attributes="0000000000000000",
            attributes_mask="FFFFFFFFFFFFFFFF",
        )
        return encode_tcb_info(
            TcbInfo(
                id="TDX",
                version=3,
                issue_date=issue,
                next_update=next_update,
                fmspc=(p.fmspc or self.platform.fmspc).hex(),
                pce_id=self.platform.pce_id.hex(),
                tcb_type=0,
                tcb_evaluation_data_number=p.tcb_evaluation_data_number,
                tdx_module=module,
                tdx_module_identities=tuple(
                    TdxModuleIdentity(
                        id=identity.id,
                        mrsigner=module.mrsigner,
                        attributes=module.attributes,
                        attributes_mask=module.attributes_mask,
                        tcb_levels=_isv_levels(identity.tcb_levels),
                    )
                    for identity in p.tdx_module_identities
                ),
                tcb_levels=tuple(_platform_level(level) for level in p.tcb_levels),
            )
        )

    def _qe_identity_json(
        self, p: CollateralParams, issue: datetime, next_update: datetime
    ) -> bytes:
        qe = p.qe or self.qe
        attributes = bytes(a & m for a, m in zip(qe.attributes, _QE_ATTRIBUTES_MASK, strict=True))
        return encode_qe_identity(
            QeIdentity(
                id="TD_QE",
                version=2,
                issue_date=issue,
                next_update=next_update,
                tcb_evaluation_data_number=p.tcb_evaluation_data_number,
                miscselect=qe.misc_select.to_bytes(4, "little").hex().upper(),
                miscselect_mask="FFFFFFFF",
                attributes=attributes.hex().upper(),
                attributes_mask=_QE_ATTRIBUTES_MASK.hex().upper(),
                mrsigner=self.qe_mr_signer.hex().upper(),
                isvprodid=qe.isv_prod_id,
                tcb_levels=_isv_levels(p.qe_levels),
            )
        )

    # -- quotes ------------------------------------------------------------------------

    def _sign_qe_report(self) -> tuple[EnclaveReport, bytes]:
        """The TD-QE's report: binds the attestation key, signed by the PCK key."""
        attestation_key = _raw_public_key(self._attestation_key)
        report = EnclaveReport(
            cpu_svn=self.platform.cpu_svn,
            misc_select=self.qe.misc_select,
            attributes=self.qe.attributes,
            mr_enclave=self.qe_mr_enclave,
            mr_signer=self.qe_mr_signer,
            isv_prod_id=self.qe.isv_prod_id,
            isv_svn=self.qe.isv_svn,
            report_data=hashlib.sha256(attestation_key + _QE_AUTH_DATA).digest() + bytes(32),
            raw=b"",
        )
        return report, _sign_raw(self._pck_key, encode_enclave_report(report))

    def td_report(
        self, *, report_data: bytes, td: SimulatedTd | None = None, td_report_15: bool = False
    ) -> TdReport:
        """The TD report a quote carries: the TD's fields plus the platform's TCB."""
        if len(report_data) != 64:
            raise ValueError(f"report_data must be 64 bytes, got {len(report_data)}")
        td = td or SimulatedTd()
        platform = self.platform
        return TdReport(
            tee_tcb_svn=platform.tee_tcb_svn,
            mr_seam=self.mr_seam,
            mr_signer_seam=platform.mr_signer_seam,
            seam_attributes=bytes(8),
            td_attributes=td.td_attributes,
            xfam=td.xfam,
            mrtd=td.mrtd,
            mr_config_id=td.mr_config_id,
            mr_owner=td.mr_owner,
            mr_owner_config=td.mr_owner_config,
            rtmr0=td.rtmr0,
            rtmr1=td.rtmr1,
            rtmr2=td.rtmr2,
            rtmr3=td.rtmr3,
            report_data=bytes(report_data),
            tee_tcb_svn2=(platform.tee_tcb_svn2 or platform.tee_tcb_svn) if td_report_15 else None,
            mr_servicetd=td.mr_servicetd if td_report_15 else None,
        )

    def quote(
        self, *, report_data: bytes, td: SimulatedTd | None = None, version: Literal[4, 5] = 4
    ) -> bytes:
        """A TDX quote: v4 with TD report 1.0, or v5 (body type 3) with TD report 1.5."""
        if version not in (L.QUOTE_V4, L.QUOTE_V5):
            raise ValueError(f"quote version must be 4 or 5, got {version}")
        report = self.td_report(report_data=report_data, td=td, td_report_15=version == 5)
        header = QuoteHeader(
            version=version,
            attestation_key_type=L.ATTESTATION_KEY_ECDSA_P256,
            tee_type=L.TEE_TYPE_TDX,
            qe_svn=0,  # "reserved" for TDX; 0 in real TDX quotes
            pce_svn=0,
            qe_vendor_id=self.qe_vendor_id,
            user_data=self._derive(b"qe-id")[:16] + bytes(4),  # QE ID, as real QEs fill it
        )
        signed = encode_signed_data(header, report)
        signature_data = QuoteSignatureData(
            signature=_sign_raw(self._attestation_key, signed),
            attestation_key=_raw_public_key(self._attestation_key),
            qe_report=self._qe_report,
            qe_report_signature=self._qe_report_signature,
            qe_auth_data=_QE_AUTH_DATA,
            certification=CertificationData(
                type=L.CERT_PCK_CHAIN, data=self.pck_chain_pem() + b"\0"
            ),
        )
        return encode_quote(header, report, signature_data)


def _isv_levels(levels: tuple[IsvSvnLevel, ...]) -> tuple[IsvTcbLevel, ...]:
    return tuple(
        IsvTcbLevel(
            tcb=IsvTcb(isvsvn=level.isv_svn),
            tcb_date=level.tcb_date,
            tcb_status=level.status,
            advisory_ids=level.advisory_ids,
        )
        for level in levels
    )


def _platform_level(level: PlatformTcbLevel) -> TcbLevel:
    return TcbLevel(
        tcb=Tcb(
            sgxtcbcomponents=tuple(TcbComponent(svn) for svn in level.sgx_tcb_components),
            pcesvn=level.pce_svn,
            tdxtcbcomponents=tuple(TcbComponent(svn) for svn in level.tdx_tcb_components),
        ),
        tcb_date=level.tcb_date,
        tcb_status=level.status,
        advisory_ids=level.advisory_ids,
    )
