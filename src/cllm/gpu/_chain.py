"""Fixed-shape certificate chains (device identity and RIM signing) checked link by link.

No path building: the chain is taken exactly as given, leaf first. Each certificate must be
directly issued by the next (name and ECDSA P-384/SHA-384 signature), the last must be byte-equal
to the pinned root, and the CA and key-usage bits must fit each position. The structural verdict
does not depend on time and is cached by the exact DER bytes; validity windows are checked
against the evaluation time on every call.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from cllm.errors import X509_DECODE_ERRORS as _X509_ERRORS
from cllm.errors import GpuEvidenceFormatError, VerificationError

# Malformed DER (and unknown curves or algorithms in it) surface lazily as these.
X509_DECODE_ERRORS: tuple[type[Exception], ...] = (*_X509_ERRORS, UnsupportedAlgorithm)

__all__ = [
    "DEVICE_CHAIN_LENGTH",
    "DeviceIdentity",
    "GpuArch",
    "check_links",
    "check_validity",
    "der",
    "device_identity",
    "ecdsa_p384_verify",
    "parse_pem_chain",
    "validity_windows",
]

DEVICE_CHAIN_LENGTH: Final = 5
MAX_CHAIN_SIZE: Final = 64 * 1024  # five PEM certificates take about 5 KiB
_SHA384 = ec.ECDSA(hashes.SHA384())
_ECDSA_SHA384 = x509.SignatureAlgorithmOID.ECDSA_WITH_SHA384
# DICE TcbInfo extensions carrying the FWID: Hopper (DiceTcbInfo, FWID last) and Blackwell
# (TcbInfo, fwids[0]); the FWID is the OCTET STRING after the SHA-384 AlgorithmIdentifier.
_DICE_TCB_INFO: Final = x509.ObjectIdentifier("2.23.133.5.4.1")
_TCG_TCB_INFO: Final = x509.ObjectIdentifier("2.23.133.5.4.1.1")
_FWID_PREFIX: Final = bytes.fromhex("06096086480165030402020430")
_LEAF_CN: Final = re.compile(r"(GH100|GB100) ([A-Z][0-9]{2}) (GSP|FSP) FMC LF")
_CHIP_ARCH: Final = {"GH100": "HOPPER", "GB100": "BLACKWELL"}


class GpuArch(enum.StrEnum):
    HOPPER = "HOPPER"
    BLACKWELL = "BLACKWELL"


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else name.rfc4514_string()


def ecdsa_p384_verify(key: ec.EllipticCurvePublicKey, raw_rs: bytes, message: bytes) -> bool:
    """Verify a raw 96-byte r || s ECDSA P-384/SHA-384 signature."""
    if len(raw_rs) != 96:
        return False
    r = int.from_bytes(raw_rs[:48], "big")
    s = int.from_bytes(raw_rs[48:], "big")
    if not (r and s):
        return False
    try:
        key.verify(encode_dss_signature(r, s), message, _SHA384)
    except InvalidSignature:
        return False
    return True


def parse_pem_chain(pem: bytes | str, *, what: str) -> tuple[x509.Certificate, ...]:
    """Certificates of a PEM text, in order; ``gpu_chain_malformed`` when there are none or one
    does not decode."""
    data = pem.encode() if isinstance(pem, str) else pem
    if len(data) > MAX_CHAIN_SIZE:
        raise GpuEvidenceFormatError(
            f"{what}: {len(data)} bytes, at most {MAX_CHAIN_SIZE}", code="gpu_chain_malformed"
        )
    try:
        certs = tuple(x509.load_pem_x509_certificates(data.rstrip(b"\0")))
        for cert in certs:  # decode lazily-read fields now, not in the middle of a check
            _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.extensions)
    except X509_DECODE_ERRORS as exc:
        raise GpuEvidenceFormatError(
            f"{what}: not a PEM certificate chain ({exc})", code="gpu_chain_malformed"
        ) from exc
    return certs


def _p384_key(cert: x509.Certificate, what: str, code: str) -> ec.EllipticCurvePublicKey:
    try:
        key = cert.public_key()
    except X509_DECODE_ERRORS as exc:
        raise VerificationError(f"{what}: malformed public key", code=code) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise VerificationError(f"{what}: key is not ECDSA P-384", code=code)
    return key


def _basic_ca(cert: x509.Certificate) -> tuple[bool, int | None]:
    try:
        value = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False, None
    return value.ca, value.path_length


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def check_links(
    certs: Sequence[x509.Certificate], *, root_der: bytes, what: str, code: str, untrusted: str
) -> None:
    """Each certificate directly issued by the next, the last byte-equal to the root, CA bits.

    Raises ``VerificationError`` with ``code`` (structure, links) or ``untrusted`` (root)."""
    try:
        subjects = [cert.subject for cert in certs]  # each access builds a new Name: once
        for i, cert in enumerate(certs):
            label = f"{what}: certificate {i} '{_cn(subjects[i])}'"
            if cert.signature_algorithm_oid != _ECDSA_SHA384:
                raise VerificationError(f"{label} is not signed with ECDSA-SHA384", code=code)
            _p384_key(cert, label, code)
            is_ca, path_length = _basic_ca(cert)
            usage = _key_usage(cert)
            if i == 0:
                if is_ca or usage is None or not usage.digital_signature:
                    raise VerificationError(f"{label} is not a signing leaf", code=code)
            else:
                if not is_ca or usage is None or not usage.key_cert_sign:
                    raise VerificationError(f"{label} is not a CA", code=code)
                if path_length is not None and path_length < i - 1:
                    raise VerificationError(f"{label}: path length constraint exceeded", code=code)
            if i + 1 < len(certs):
                issuer = certs[i + 1]
                if cert.issuer != subjects[i + 1]:
                    raise VerificationError(
                        f"{what}: certificate {i} issuer != certificate {i + 1} subject", code=code
                    )
                try:
                    cert.verify_directly_issued_by(issuer)
                except (InvalidSignature, ValueError, TypeError) as exc:
                    raise VerificationError(
                        f"{label}: signature does not verify under certificate {i + 1}", code=code
                    ) from exc
        # Byte-equal to the pinned root, whose self-signature was checked when it was pinned.
        if not certs or der(certs[-1]) != root_der:
            raise VerificationError(f"{what}: does not end in the pinned root", code=untrusted)
    except X509_DECODE_ERRORS as exc:
        raise VerificationError(f"{what}: malformed certificate ({exc})", code=code) from exc


def _iso(ts: int) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):  # outside datetime's years 1..9999
        return f"unix time {ts}"


def validity_windows(certs: Sequence[x509.Certificate]) -> tuple[tuple[int, int], ...]:
    return tuple(
        (int(c.not_valid_before_utc.timestamp()), int(c.not_valid_after_utc.timestamp()))
        for c in certs
    )


def check_validity(
    certs: Sequence[x509.Certificate],
    at: int,
    *,
    what: str,
    prefix: str,
    windows: tuple[tuple[int, int], ...] | None = None,
) -> int:
    """Every certificate valid at ``at`` (both bounds inclusive); returns the earliest expiry.

    ``windows`` (``validity_windows(certs)``, computed once) saves decoding the dates again.
    Codes: ``{prefix}_cert_expired``, ``{prefix}_cert_not_yet_valid``."""
    if windows is None:
        windows = validity_windows(certs)
    for i, (start, end) in enumerate(windows):
        if start <= at <= end:
            continue
        label = f"{what}: certificate {i} '{_cn(certs[i].subject)}'"
        if at < start:
            raise VerificationError(
                f"{label} is not valid until {_iso(start)} (evaluated at {_iso(at)})",
                code=f"{prefix}_cert_not_yet_valid",
            )
        raise VerificationError(
            f"{label} expired at {_iso(end)} (evaluated at {_iso(at)})",
            code=f"{prefix}_cert_expired",
        )
    return min((end for _, end in windows), default=at)


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What a structurally valid device chain says about the GPU."""

    certificates: tuple[x509.Certificate, ...]  # leaf first, root last
    arch: GpuArch
    chip: str  # GH100, GB100
    firmware: str  # GSP or FSP: which engine holds the attestation key
    leaf_cn: str
    leaf_key: ec.EllipticCurvePublicKey
    fwid: bytes | None
    ueid: str  # decimal serial number of the leaf, as NVIDIA names it
    hwmodel: str  # common name of the per-chip CA (certificate 1)
    device_serial: str | None  # serialNumber attribute of certificate 1
    windows: tuple[tuple[int, int], ...]  # validity of each certificate, unix seconds


def _leaf_fwid(leaf: x509.Certificate) -> bytes | None:
    for oid, last in ((_DICE_TCB_INFO, True), (_TCG_TCB_INFO, False)):
        try:
            ext = leaf.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        value = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
        at = value.rfind(_FWID_PREFIX) if last else value.find(_FWID_PREFIX)
        start = at + len(_FWID_PREFIX)
        if at < 0 or start + 48 > len(value) or (last and start + 48 != len(value)):
            raise VerificationError(
                "device leaf: FWID extension malformed", code="gpu_chain_invalid"
            )
        return value[start : start + 48]
    return None


def device_identity(certs: Sequence[x509.Certificate], *, root_der: bytes) -> DeviceIdentity:
    """Check a device chain's shape and links; the identity it certifies."""
    if len(certs) != DEVICE_CHAIN_LENGTH:
        raise VerificationError(
            f"device chain has {len(certs)} certificates, exactly {DEVICE_CHAIN_LENGTH} required",
            code="gpu_chain_length",
        )
    if der(certs[-1]) != root_der:
        raise VerificationError(
            "device chain does not end in the pinned device identity root",
            code="gpu_chain_untrusted",
        )
    check_links(
        certs,
        root_der=root_der,
        what="device chain",
        code="gpu_chain_invalid",
        untrusted="gpu_chain_untrusted",
    )
    leaf, brom = certs[0], certs[1]
    leaf_cn = _cn(leaf.subject)
    match = _LEAF_CN.fullmatch(leaf_cn)
    if match is None:
        raise VerificationError(
            f"device leaf '{leaf_cn}' is not a GPU attestation key", code="gpu_arch_mismatch"
        )
    chip, stepping, firmware = match.groups()
    hwmodel = _cn(brom.subject)
    if hwmodel != f"{chip} {stepping} {firmware} BROM":
        raise VerificationError(
            f"device CA '{hwmodel}' does not match leaf '{leaf_cn}'", code="gpu_arch_mismatch"
        )
    serials = brom.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)
    return DeviceIdentity(
        certificates=tuple(certs),
        arch=GpuArch(_CHIP_ARCH[chip]),
        chip=chip,
        firmware=firmware,
        leaf_cn=leaf_cn,
        leaf_key=_p384_key(leaf, "device leaf", "gpu_chain_invalid"),
        fwid=_leaf_fwid(leaf),
        ueid=str(leaf.serial_number),
        hwmodel=hwmodel,
        device_serial=str(serials[0].value) if serials else None,
        windows=validity_windows(certs),
    )
