"""Trust roots for GPU evidence: the pinned NVIDIA roots, and how to inject another pair.

A ``GpuTrustRoots`` names the device identity root (device certificate chains, their OCSP
responders) and the RIM signing root (RIM chains, their OCSP responders). Only the pinned pair is
``is_nvidia``; a verdict under any other pair (a simulated GPU's, a test's) says so, so simulated
evidence never passes as NVIDIA hardware.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import cache
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

__all__ = [
    "NVIDIA_DEVICE_ROOT_PEM",
    "NVIDIA_DEVICE_ROOT_SHA256",
    "NVIDIA_RIM_ROOT_PEM",
    "NVIDIA_RIM_ROOT_SHA256",
    "GpuTrustRoots",
    "nvidia_roots",
]

_log = logging.getLogger(__name__)

# NVIDIA Device Identity CA (P-384, 2021-11-05 .. 9999-12-31), as shipped by NVIDIA's verifiers
# (nvtrust verifier_device_root.pem).
NVIDIA_DEVICE_ROOT_PEM: Final = """\
-----BEGIN CERTIFICATE-----
MIICCzCCAZCgAwIBAgIQLTZwscoQBBHB/sDoKgZbVDAKBggqhkjOPQQDAzA1MSIw
IAYDVQQDDBlOVklESUEgRGV2aWNlIElkZW50aXR5IENBMQ8wDQYDVQQKDAZOVklE
SUEwIBcNMjExMTA1MDAwMDAwWhgPOTk5OTEyMzEyMzU5NTlaMDUxIjAgBgNVBAMM
GU5WSURJQSBEZXZpY2UgSWRlbnRpdHkgQ0ExDzANBgNVBAoMBk5WSURJQTB2MBAG
ByqGSM49AgEGBSuBBAAiA2IABA5MFKM7+KViZljbQSlgfky/RRnEQScW9NDZF8SX
gAW96r6u/Ve8ZggtcYpPi2BS4VFu6KfEIrhN6FcHG7WP05W+oM+hxj7nyA1r1jkB
2Ry70YfThX3Ba1zOryOP+MJ9vaNjMGEwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8B
Af8EBAMCAQYwHQYDVR0OBBYEFFeF/4PyY8xlfWi3Olv0jUrL+0lfMB8GA1UdIwQY
MBaAFFeF/4PyY8xlfWi3Olv0jUrL+0lfMAoGCCqGSM49BAMDA2kAMGYCMQCPeFM3
TASsKQVaT+8S0sO9u97PVGCpE9d/I42IT7k3UUOLSR/qvJynVOD1vQKVXf0CMQC+
EY55WYoDBvs2wPAH1Gw4LbcwUN8QCff8bFmV4ZxjCRr4WXTLFHBKjbfneGSBWwA=
-----END CERTIFICATE-----
"""
NVIDIA_DEVICE_ROOT_SHA256: Final = (
    "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48"
)

# NVIDIA CoRIM signing Root CA (P-384, 2023-03-16 .. 2053-03-08), nvtrust verifier_RIM_root.pem.
NVIDIA_RIM_ROOT_PEM: Final = """\
-----BEGIN CERTIFICATE-----
MIICKTCCAbCgAwIBAgIQRdrjoA5QN73fh1N17LXicDAKBggqhkjOPQQDAzBFMQsw
CQYDVQQGEwJVUzEPMA0GA1UECgwGTlZJRElBMSUwIwYDVQQDDBxOVklESUEgQ29S
SU0gc2lnbmluZyBSb290IENBMCAXDTIzMDMxNjE1MzczNFoYDzIwNTMwMzA4MTUz
NzM0WjBFMQswCQYDVQQGEwJVUzEPMA0GA1UECgwGTlZJRElBMSUwIwYDVQQDDBxO
VklESUEgQ29SSU0gc2lnbmluZyBSb290IENBMHYwEAYHKoZIzj0CAQYFK4EEACID
YgAEuECyi9vNM+Iw2lfUzyBldHAwaC1HF7TCgp12QcEyUTm3Tagxwr48d55+K2VI
lWYIDk7NlAIQdcV/Ff7euGLI+Qauj93HsSI4WX298PpW54RTgz9tC+Q684caR/BX
WEeZo2MwYTAdBgNVHQ4EFgQUpaXrOPK4ZDAk08DBskn594zeZjAwHwYDVR0jBBgw
FoAUpaXrOPK4ZDAk08DBskn594zeZjAwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8B
Af8EBAMCAQYwCgYIKoZIzj0EAwMDZwAwZAIwHGDyscDP6ihHqRvZlI3eqZ4YkvjE
1duaN84tAHRVgxVMvNrp5Tnom3idHYGW/dskAjATvjIx6VzHm/4e2GiZAyZEIUBD
OKPzp5ei/A0iUZpdvngenDwV8Qa/wGdiTmJ7Bp4=
-----END CERTIFICATE-----
"""
NVIDIA_RIM_ROOT_SHA256: Final = "12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1"


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


@dataclass(frozen=True, slots=True)
class GpuTrustRoots:
    device: x509.Certificate
    rim: x509.Certificate
    name: str
    is_nvidia: bool

    @property
    def device_der(self) -> bytes:
        return _der(self.device)

    @property
    def rim_der(self) -> bytes:
        return _der(self.rim)

    @classmethod
    def custom(cls, *, device: x509.Certificate, rim: x509.Certificate, name: str) -> GpuTrustRoots:
        """Roots other than NVIDIA's (a simulated GPU, tests): logged, never ``is_nvidia``."""
        pinned = (
            hashlib.sha256(_der(device)).hexdigest() == NVIDIA_DEVICE_ROOT_SHA256
            and hashlib.sha256(_der(rim)).hexdigest() == NVIDIA_RIM_ROOT_SHA256
        )
        if pinned:
            return nvidia_roots()
        _log.warning("GPU evidence verified under non-NVIDIA roots %s", name)
        return cls(device=device, rim=rim, name=name, is_nvidia=False)


@cache
def nvidia_roots() -> GpuTrustRoots:
    device = x509.load_pem_x509_certificate(NVIDIA_DEVICE_ROOT_PEM.encode())
    rim = x509.load_pem_x509_certificate(NVIDIA_RIM_ROOT_PEM.encode())
    if (
        hashlib.sha256(_der(device)).hexdigest() != NVIDIA_DEVICE_ROOT_SHA256
        or hashlib.sha256(_der(rim)).hexdigest() != NVIDIA_RIM_ROOT_SHA256
    ):  # pragma: no cover - guards the constants
        raise AssertionError("embedded NVIDIA roots do not match their pinned hashes")
    return GpuTrustRoots(device=device, rim=rim, name="NVIDIA", is_nvidia=True)
