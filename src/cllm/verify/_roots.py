"""Trust roots: the pinned Intel SGX Root CA, and how to load another root explicitly."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cllm.errors import CllmError
from cllm.quote import layout as quote_layout

__all__ = ["INTEL_SGX_ROOT_CA_PEM", "INTEL_SGX_ROOT_CA_SHA256", "TrustRoot", "intel_root"]

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


@dataclass(frozen=True, slots=True)
class TrustRoot:
    """A root CA that PCK chains, TCB signing chains and CRLs must lead to.

    Quotes under this root must carry ``qe_vendor_id`` (Intel's for the Intel root), unless the
    root was loaded with ``allow_any_qe_vendor``, which is logged.
    """

    certificate: x509.Certificate
    name: str
    qe_vendor_id: bytes
    is_intel_production: bool
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
        qe_vendor_id: bytes = quote_layout.INTEL_QE_VENDOR_ID,
        allow_any_qe_vendor: bool = False,
    ) -> TrustRoot:
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise CllmError(
                f"cannot read root CA {path}: {exc.strerror}", code="root_ca_unreadable"
            ) from exc
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise CllmError(f"{path} is not a PEM certificate", code="root_ca_malformed") from exc
        root = cls(
            certificate=cert,
            name=name,
            qe_vendor_id=qe_vendor_id,
            is_intel_production=False,
            allow_any_qe_vendor=allow_any_qe_vendor,
        )
        if root.sha256 == INTEL_SGX_ROOT_CA_SHA256 and not allow_any_qe_vendor:
            return intel_root()
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
    )
    if root.sha256 != INTEL_SGX_ROOT_CA_SHA256:  # pragma: no cover - guards the constant
        raise AssertionError("embedded Intel SGX Root CA does not match its pinned hash")
    return root
