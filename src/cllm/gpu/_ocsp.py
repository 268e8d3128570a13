"""OCSP for the device and RIM chains: requests, strict response checks, and where responses
come from (supplied files for air-gapped use, or NVIDIA's responder with a cache).

A response counts only when: its status is ``successful``; it holds exactly one answer, for the
certificate asked about (CertID recomputed with the response's hash); it is signed with ECDSA
P-384/SHA-384 by the issuer itself or by a delegated responder (``id-kp-OCSPSigning``) that is
directly issued by a CA of the same, already verified chain; and it is fresh: our nonce echoed,
or ``thisUpdate`` no older than ``max_age`` and ``nextUpdate`` not passed.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from cllm.errors import X509_DECODE_ERRORS as _X509_ERRORS
from cllm.errors import VerificationError
from cllm.gpu._chain import der

# Malformed DER (and unknown curves or algorithms in it) surface lazily as these.
X509_DECODE_ERRORS: tuple[type[Exception], ...] = (*_X509_ERRORS, UnsupportedAlgorithm)

__all__ = [
    "NVIDIA_OCSP_URL",
    "OcspFetcher",
    "OcspMode",
    "OcspPolicy",
    "OcspSource",
    "build_ocsp_request",
    "check_ocsp_response",
]

_log = logging.getLogger(__name__)

NVIDIA_OCSP_URL: Final = "https://ocsp.ndis.nvidia.com/"
_MAX_RESPONSE: Final = 64 * 1024


class OcspMode(enum.StrEnum):
    REQUIRE = "require"  # a valid ``good`` answer for every certificate checked
    ALLOW_UNKNOWN = "allow-unknown"  # ``unknown`` or unobtainable accepted (logged)
    OFF = "off"  # no revocation check (logged)


class OcspSource(Protocol):
    """Where answers come from: returns DER and the nonce sent with its request (or None)."""

    def response_for(
        self, cert: x509.Certificate, issuer: x509.Certificate
    ) -> tuple[bytes, bytes | None] | None: ...


@dataclass(frozen=True, slots=True)
class OcspPolicy:
    mode: OcspMode
    responses: tuple[bytes, ...] = ()  # supplied DER responses (air-gapped)
    fetcher: OcspSource | None = None  # consulted for certificates no supplied response covers
    max_age: int = 7 * 24 * 3600  # for answers without our nonce
    clock_skew: int = 300


def _cert_id_hash(algorithm: hashes.HashAlgorithm) -> Callable[[bytes], bytes]:
    names = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384}
    hasher = names.get(algorithm.name)
    if hasher is None:
        raise VerificationError(
            f"OCSP CertID hash {algorithm.name} not supported", code="gpu_ocsp_invalid"
        )
    return lambda data: hasher(data).digest()


def _key_bytes(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def build_ocsp_request(
    cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None
) -> bytes:
    """DER OCSP request (CertID with SHA-384, as NVIDIA's Python verifier sends)."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA384())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _covers(response: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether the response's (single) CertID names ``cert`` issued by ``issuer``."""
    try:
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            return False
        digest = _cert_id_hash(response.hash_algorithm)
        return (
            response.serial_number == cert.serial_number
            and response.issuer_name_hash == digest(issuer.subject.public_bytes())
            and response.issuer_key_hash == digest(_key_bytes(issuer))
        )
    except (VerificationError, *X509_DECODE_ERRORS):  # type: ignore[misc]
        return False  # e.g. several answers in one response: not one for this certificate


def _signer(
    response: ocsp.OCSPResponse,
    issuer: x509.Certificate,
    above: Sequence[x509.Certificate],
    at: int,
) -> x509.Certificate:
    def names(cert: x509.Certificate) -> bool:
        if response.responder_key_hash is not None:
            return response.responder_key_hash == hashlib.sha1(_key_bytes(cert)).digest()
        return response.responder_name == cert.subject

    if not response.certificates:
        if not names(issuer):
            raise VerificationError("OCSP responder is not the issuer", code="gpu_ocsp_invalid")
        return issuer
    delegate = response.certificates[0]
    if not names(delegate):
        raise VerificationError(
            "OCSP responder ID does not name its certificate", code="gpu_ocsp_invalid"
        )
    try:
        eku = delegate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
        raise VerificationError("OCSP responder lacks id-kp-OCSPSigning", code="gpu_ocsp_invalid")
    start = int(delegate.not_valid_before_utc.timestamp())
    end = int(delegate.not_valid_after_utc.timestamp())
    if not start <= at <= end:
        raise VerificationError("OCSP responder certificate not valid now", code="gpu_ocsp_invalid")
    for ca in above:
        if delegate.issuer != ca.subject:
            continue
        try:
            delegate.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError):
            continue
        return delegate
    raise VerificationError(
        "OCSP responder certificate is not issued by a CA of the chain", code="gpu_ocsp_invalid"
    )


@functools.lru_cache(maxsize=1024)
def _signature_ok(tbs: bytes, signature: bytes, spki: bytes) -> bool:
    """ECDSA P-384/SHA-384 over ``tbs``: a pure function of its bytes, so remembered (a verifier
    sees the same stapled or cached answers in every document until they are re-issued)."""
    key = serialization.load_der_public_key(spki)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(signature, tbs, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False
    return True


def check_ocsp_response(
    der_response: bytes,
    *,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    above: Sequence[x509.Certificate],
    at: int,
    nonce: bytes | None,
    max_age: int,
    clock_skew: int = 300,
) -> ocsp.OCSPCertStatus:
    """Verify one response for ``cert`` (issued by ``issuer``; ``above`` = issuer and the CAs
    above it, root last) and return its status. Raises ``VerificationError`` otherwise."""
    what = f"OCSP response for serial {cert.serial_number:x}"
    try:
        response = ocsp.load_der_ocsp_response(der_response)
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise VerificationError(
                f"{what}: status {response.response_status.name}", code="gpu_ocsp_invalid"
            )
        if len(list(response.responses)) != 1 or not _covers(response, cert, issuer):
            raise VerificationError(
                f"{what}: answers for another certificate", code="gpu_ocsp_invalid"
            )
        signer = _signer(response, issuer, above, at)
        key = signer.public_key()
        if (
            not isinstance(key, ec.EllipticCurvePublicKey)
            or not isinstance(key.curve, ec.SECP384R1)
            or response.signature_algorithm_oid != x509.SignatureAlgorithmOID.ECDSA_WITH_SHA384
        ):
            raise VerificationError(
                f"{what}: not signed with ECDSA P-384/SHA-384", code="gpu_ocsp_invalid"
            )
        spki = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if not _signature_ok(response.tbs_response_bytes, response.signature, spki):
            raise VerificationError(f"{what}: signature invalid", code="gpu_ocsp_invalid")
        this_update = int(response.this_update_utc.timestamp())
        next_update = response.next_update_utc
        if this_update > at + clock_skew:
            raise VerificationError(f"{what}: issued in the future", code="gpu_ocsp_stale")
        if next_update is not None and at > int(next_update.timestamp()):
            raise VerificationError(f"{what}: past its nextUpdate", code="gpu_ocsp_stale")
        echoed = None
        with contextlib.suppress(x509.ExtensionNotFound):
            echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        if nonce is not None and echoed is not None and echoed != nonce:
            raise VerificationError(f"{what}: nonce not echoed", code="gpu_ocsp_nonce_mismatch")
        if (nonce is None or echoed is None) and at - this_update > max_age:
            raise VerificationError(
                f"{what}: thisUpdate older than {max_age} s and no nonce", code="gpu_ocsp_stale"
            )
        return response.certificate_status
    except X509_DECODE_ERRORS as exc:
        raise VerificationError(f"{what}: malformed ({exc})", code="gpu_ocsp_malformed") from exc


@dataclass
class OcspFetcher:
    """POSTs requests to an OCSP responder (NVIDIA's by default), caching each answer until its
    nextUpdate. ``clock`` and ``nonce`` are injected (tests, determinism)."""

    client: httpx.Client
    clock: Callable[[], float]
    nonce: Callable[[], bytes]
    url: str = NVIDIA_OCSP_URL
    timeout: float = 10.0
    _cache: dict[tuple[int, bytes], tuple[bytes, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def response_for(
        self, cert: x509.Certificate, issuer: x509.Certificate
    ) -> tuple[bytes, bytes | None] | None:
        key = (cert.serial_number, der(issuer))
        now = self.clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now <= cached[1]:
            return cached[0], None  # freshness from nextUpdate / max_age, not our nonce
        nonce = self.nonce()
        try:
            reply = self.client.post(
                self.url,
                content=build_ocsp_request(cert, issuer, nonce=nonce),
                headers={"Content-Type": "application/ocsp-request"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            _log.warning("OCSP responder %s unreachable: %s", self.url, exc)
            return None
        if reply.status_code != 200 or len(reply.content) > _MAX_RESPONSE:
            _log.warning("OCSP responder %s answered %s", self.url, reply.status_code)
            return None
        body = reply.content
        try:
            next_update = ocsp.load_der_ocsp_response(body).next_update_utc
        except X509_DECODE_ERRORS:
            next_update = None
        if next_update is not None:
            with self._lock:
                self._cache[key] = (body, next_update.timestamp())
        return body, nonce


def find_supplied(
    responses: Sequence[bytes], cert: x509.Certificate, issuer: x509.Certificate
) -> bytes | None:
    for item in responses:
        try:
            parsed = ocsp.load_der_ocsp_response(item)
        except X509_DECODE_ERRORS:
            continue
        if _covers(parsed, cert, issuer):
            return item
    return None


@dataclass(frozen=True, slots=True)
class OcspOutcome:
    status: str  # good, unknown, unavailable, off
    checked: int


def check_chain_revocation(
    chain: Sequence[x509.Certificate],
    indices: Sequence[int],
    *,
    policy: OcspPolicy,
    at: int,
    what: str,
) -> OcspOutcome:
    """OCSP for ``chain[i]`` (issuer ``chain[i + 1]``) for each ``i`` in ``indices``."""
    if policy.mode is OcspMode.OFF:
        _log.warning("OCSP is off: %s not checked for revocation", what)
        return OcspOutcome("off", 0)
    worst = "good"
    for i in indices:
        cert, issuer = chain[i], chain[i + 1]
        label = f"{what}: certificate {i}"
        found: tuple[bytes, bytes | None] | None = None
        supplied = find_supplied(policy.responses, cert, issuer)
        if supplied is not None:
            found = (supplied, None)
        elif policy.fetcher is not None:
            found = policy.fetcher.response_for(cert, issuer)
        if found is None:
            if policy.mode is OcspMode.ALLOW_UNKNOWN:
                _log.warning("%s: no OCSP answer, accepted (allow-unknown)", label)
                worst = "unavailable" if worst == "good" else worst
                continue
            raise VerificationError(
                f"{label}: no OCSP answer available", code="gpu_ocsp_unavailable"
            )
        status = check_ocsp_response(
            found[0],
            cert=cert,
            issuer=issuer,
            above=chain[i + 1 :],
            at=at,
            nonce=found[1],
            max_age=policy.max_age,
            clock_skew=policy.clock_skew,
        )
        if status == ocsp.OCSPCertStatus.REVOKED:
            raise VerificationError(f"{label} is revoked", code="gpu_cert_revoked")
        if status == ocsp.OCSPCertStatus.UNKNOWN:
            if policy.mode is not OcspMode.ALLOW_UNKNOWN:
                raise VerificationError(f"{label}: OCSP status unknown", code="gpu_ocsp_unknown")
            _log.warning("%s: OCSP status unknown, accepted (allow-unknown)", label)
            worst = "unknown"
    return OcspOutcome(worst, len(indices))
