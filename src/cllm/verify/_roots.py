"""Trust roots: the pinned Intel SGX Root CA, and how to load another root explicitly."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from cllm.errors import CllmError
from cllm.quote import layout as quote_layout

__all__ = [
    "INTEL_SGX_ROOT_CA_PEM",
    "INTEL_SGX_ROOT_CA_SHA256",
    "INTEL_TCB_SIGNING_KEY",
    "INTEL_TCB_SIGNING_SUBJECT",
    "SIMULATED_QE_VENDOR_ID",
    "SIMULATED_ROOT_CA_NAME",
    "TCB_SIGNER_EXTENSION_OID",
    "TcbSigner",
    "TrustRoot",
    "intel_root",
]

_log = logging.getLogger(__name__)

# Intel SGX Root CA (production), as published by Intel at
# certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.pem.
INTEL_SGX_ROOT_CA_PEM: Final = """\
-----BEGIN CERTIFICATE-----
MIICjzCCAjSgAwIBAgIUImUM1lqdNInzg7SVUr9QGzknBqwwCgYIKoZIzj0EAwIw
aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv
cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ
BgNVBAYTAlVTMB4XDTE4MDUyMTEwNDUxMFoXDTQ5MTIzMTIzNTk1OVowaDEaMBgG
A1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENvcnBvcmF0
aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJBgNVBAYT
AlVTMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEC6nEwMDIYZOj/iPWsCzaEKi7
1OiOSLRFhWGjbnBVJfVnkY4u3IjkDYYL0MxO4mqsyYjlBalTVYxFP2sJBK5zlKOB
uzCBuDAfBgNVHSMEGDAWgBQiZQzWWp00ifODtJVSv1AbOScGrDBSBgNVHR8ESzBJ
MEegRaBDhkFodHRwczovL2NlcnRpZmljYXRlcy50cnVzdGVkc2VydmljZXMuaW50
ZWwuY29tL0ludGVsU0dYUm9vdENBLmRlcjAdBgNVHQ4EFgQUImUM1lqdNInzg7SV
Ur9QGzknBqwwDgYDVR0PAQH/BAQDAgEGMBIGA1UdEwEB/wQIMAYBAf8CAQEwCgYI
KoZIzj0EAwIDSQAwRgIhAOW/5QkR+S9CiSDcNoowLuPRLsWGf/Yi7GSX94BgwTwg
AiEA4J0lrHoMs+Xo5o/sX6O9QWxHRAvZUGOdRQ7cvqRXaqI=
-----END CERTIFICATE-----
"""
INTEL_SGX_ROOT_CA_SHA256: Final = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

# Intel SGX TCB Signing certificate: the only signer of TCB info and QE identity (Intel QVL pins
# the chain [TCB Signing, root]). Subject and key as in every issuer chain of the tdx-vectors
# corpus: both certificates Intel has issued for it (2018-05-21..2025-05-21 and
# 2025-05-06..2032-05-06) carry this subject and this key.
INTEL_TCB_SIGNING_SUBJECT: Final = x509.Name(
    [
        x509.NameAttribute(NameOID.COMMON_NAME, "Intel SGX TCB Signing"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Intel Corporation"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
    ]
)
INTEL_TCB_SIGNING_KEY: Final = bytes.fromhex(
    "0443451bcc73c9d5917caf766e61af3fe98087dd4f13257b261e851897799dd1"
    "3d6811fb47713803bb9bae587fccddc2e31be9a28b86962acc6daf96da58eeca96"
)
# A root that is not Intel's names the TCB Signing certificate it pins in this non-critical
# extension of its own (self-signed, so authenticated) certificate: the DER of that certificate.
# The OID is a UUID OID (ITU-T X.667, arc 2.25), which needs no registration.
TCB_SIGNER_EXTENSION_OID: Final = x509.ObjectIdentifier(
    "2.25.120125934144259563230273253567673406423"
)


# cllm's simulated DCAP world (cllm.tee): its root CA's subject CN, and the QE vendor ID of its
# quoting enclave: one of its own, so a simulated quote fails the Intel root's QE vendor check
# even if its chain were somehow accepted.
SIMULATED_ROOT_CA_NAME: Final = "cllm Simulated SGX Root CA"
SIMULATED_QE_VENDOR_ID: Final = hashlib.sha256(b"cllm simulated quoting enclave").digest()[:16]
if SIMULATED_QE_VENDOR_ID == quote_layout.INTEL_QE_VENDOR_ID:  # pragma: no cover - the constant
    raise AssertionError("the simulated QE vendor ID must differ from Intel's")


def qe_vendor_of(root: x509.Certificate) -> bytes:
    """The QE vendor whose quotes a root's PCK chains vouch for: the simulated QE's for cllm's
    simulation root, Intel's for any other (Intel's root, or a root of one's own whose
    platforms run Intel's QE). The root is recognised by its subject's CN, which decides
    nothing by itself: a root is only used because its user chose to trust that file."""
    names = root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names and names[0].value == SIMULATED_ROOT_CA_NAME:
        return SIMULATED_QE_VENDOR_ID
    return quote_layout.INTEL_QE_VENDOR_ID


@dataclass(frozen=True, slots=True)
class TcbSigner:
    """The one certificate allowed to sign TCB info and QE identity under a root: its subject
    and its public key (uncompressed SEC1 P-256 point). Renewed certificates of the same
    subject and key are all accepted; nothing else is."""

    subject: x509.Name
    key: bytes

    def matches(self, cert: x509.Certificate) -> bool:
        if cert.subject != self.subject:
            return False
        try:
            key = cert.public_key()
        except (ValueError, UnsupportedAlgorithm):  # a key no one can sign with
            return False
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint) == self.key

    @classmethod
    def of(cls, cert: x509.Certificate) -> TcbSigner:
        try:
            key = cert.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CllmError("a TCB Signing key is malformed", code="root_ca_malformed") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise CllmError("a TCB Signing key must be ECDSA P-256", code="root_ca_malformed")
        point = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return cls(subject=cert.subject, key=point)


def _embedded_tcb_signer(root: x509.Certificate) -> TcbSigner | None:
    try:
        ext = root.extensions.get_extension_for_oid(TCB_SIGNER_EXTENSION_OID)
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:
        raise CllmError("root CA extensions are malformed", code="root_ca_malformed") from exc
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - private OID
        raise CllmError("root CA TCB signer extension is malformed", code="root_ca_malformed")
    try:
        return TcbSigner.of(x509.load_der_x509_certificate(value.value))
    except ValueError as exc:
        raise CllmError(
            "root CA TCB signer extension holds no certificate", code="root_ca_malformed"
        ) from exc


@dataclass(frozen=True, slots=True)
class TrustRoot:
    """A root CA that PCK chains, TCB signing chains and CRLs must lead to.

    Quotes under this root must carry ``qe_vendor_id`` (Intel's for the Intel root), unless the
    root was loaded with ``allow_any_qe_vendor``, which is logged. TCB info and QE identity must
    be signed by ``tcb_signer``, directly under this root.
    """

    certificate: x509.Certificate
    name: str
    qe_vendor_id: bytes
    is_intel_production: bool
    tcb_signer: TcbSigner
    allow_any_qe_vendor: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.certificate.public_bytes(Encoding.DER)).hexdigest()

    @classmethod
    def from_pem_file(
        cls,
        path: str | Path,
        *,
        name: str,
        qe_vendor_id: bytes | None = None,
        allow_any_qe_vendor: bool = False,
    ) -> TrustRoot:
        """The root in a PEM file (then, for a root that is not Intel's, at most its TCB Signing
        certificate). Quotes under it must carry ``qe_vendor_id``; by default the root's own
        QE vendor (``qe_vendor_of``)."""
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise CllmError(
                f"cannot read root CA {path}: {exc.strerror}", code="root_ca_unreadable"
            ) from exc
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError as exc:
            raise CllmError(f"{path} is not a PEM certificate", code="root_ca_malformed") from exc
        if len(certs) > 2:
            raise CllmError(
                f"{path} holds {len(certs)} certificates: the root, then at most its TCB "
                "Signing certificate",
                code="root_ca_malformed",
            )
        cert = certs[0]
        if hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest() == INTEL_SGX_ROOT_CA_SHA256:
            if not allow_any_qe_vendor and len(certs) == 1:
                return intel_root()
            signer: TcbSigner | None = intel_root().tcb_signer
        else:
            signer = TcbSigner.of(certs[1]) if len(certs) == 2 else _embedded_tcb_signer(cert)
        if signer is None:
            raise CllmError(
                f"{path}: a root that is not Intel's must name its TCB Signing certificate "
                "(the second certificate of the file, or the root's cllm TCB signer extension)",
                code="root_ca_no_tcb_signer",
            )
        if len(certs) == 2 and signer != TcbSigner.of(certs[1]):
            raise CllmError(
                f"{path}: the TCB Signing certificate is not Intel's", code="root_ca_malformed"
            )
        root = cls(
            certificate=cert,
            name=name,
            qe_vendor_id=qe_vendor_of(cert) if qe_vendor_id is None else qe_vendor_id,
            is_intel_production=False,
            tcb_signer=signer,
            allow_any_qe_vendor=allow_any_qe_vendor,
        )
        _log.warning("using a non-Intel trust root %s (sha256 %s)", name, root.sha256)
        if allow_any_qe_vendor:
            _log.warning("trust root %s accepts quotes from any QE vendor", name)
        return root


@cache
def intel_root() -> TrustRoot:
    cert = x509.load_pem_x509_certificate(INTEL_SGX_ROOT_CA_PEM.encode())
    root = TrustRoot(
        certificate=cert,
        name="Intel SGX Root CA",
        qe_vendor_id=quote_layout.INTEL_QE_VENDOR_ID,
        is_intel_production=True,
        tcb_signer=TcbSigner(subject=INTEL_TCB_SIGNING_SUBJECT, key=INTEL_TCB_SIGNING_KEY),
    )
    if root.sha256 != INTEL_SGX_ROOT_CA_SHA256:  # pragma: no cover - guards the constant
        raise AssertionError("embedded Intel SGX Root CA does not match its pinned hash")
    return root
