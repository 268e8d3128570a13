"""X.509 chains, CRLs and ECDSA signatures for DCAP, with caches keyed by the input bytes.

Chain structure (signatures, CA constraints, key usage, path to the pinned root) does not depend
on time, so it is validated once per distinct input and cached; validity windows are checked on
every call against the injected evaluation time.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
)
from cryptography.x509.verification import (
    VerificationError as X509VerificationError,
)

from cllm.errors import X509_DECODE_ERRORS, CollateralFormatError, VerificationError
from cllm.verify._roots import TrustRoot

__all__ = [
    "MAX_CHAIN_CERTIFICATES",
    "MAX_CHAIN_PEM_BYTES",
    "ChainValidator",
    "Dated",
    "ParsedCrl",
    "SignatureMemo",
    "VerifiedChain",
    "certificate_p256_key",
    "check_pem_chain_size",
    "check_validity",
    "ecdsa_p256_verify",
    "load_pem_chain",
    "p256_point",
    "p256_public_key",
    "parse_crl",
]

_SHA256 = ec.ECDSA(hashes.SHA256())


@dataclass(frozen=True, slots=True)
class Dated:
    """An item valid from ``not_before`` to ``not_after`` (unix seconds, both inclusive)."""

    what: str
    not_before: int
    not_after: int


def check_validity(items: tuple[Dated, ...] | list[Dated], at: int) -> None:
    for item in items:
        if at < item.not_before:
            raise VerificationError(
                f"{item.what} is not valid until {_iso(item.not_before)} (evaluated at {_iso(at)})",
                code="not_yet_valid",
            )
        if at > item.not_after:
            raise VerificationError(
                f"{item.what} expired at {_iso(item.not_after)} (evaluated at {_iso(at)})",
                code="expired",
            )


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else name.rfc4514_string()


@dataclass(frozen=True, slots=True)
class VerifiedChain:
    """A certificate path from a leaf to the trust root, structurally valid."""

    certificates: tuple[x509.Certificate, ...]  # leaf first, trust root last
    validity: tuple[Dated, ...]

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]

    @property
    def issuer(self) -> x509.Certificate:
        return self.certificates[1]


# Intel's PCK chain is leaf, PCK Platform or Processor CA, root (root optional in the quote);
# collateral signing chains are TCB Signing, root; CRL issuer chains are PCK CA, root. Nothing
# longer is ever genuine, so nothing longer is parsed: a PEM text is refused before decoding when
# it is bigger or holds more certificate blocks than any genuine chain (Intel's are ~3.3 KB).
MAX_CHAIN_CERTIFICATES: Final = 3
MAX_CHAIN_PEM_BYTES: Final = 16 * 1024
_PEM_BEGIN: Final = b"-----BEGIN CERTIFICATE-----"
_PCK_CA_NAMES: Final = ("SGX PCK Platform CA", "SGX PCK Processor CA")


def _shape_error(what: str, problem: str) -> VerificationError:
    return VerificationError(f"{what}: {problem}", code="chain_shape_invalid")


def check_pem_chain_size(pem: bytes, *, what: str) -> None:
    """Refuse, before any decoding, a PEM text bigger or with more certificate blocks than any
    genuine DCAP chain (``chain_shape_invalid``)."""
    if len(pem) > MAX_CHAIN_PEM_BYTES:
        raise _shape_error(what, f"{len(pem)} bytes of PEM, more than any genuine chain")
    blocks = pem.count(_PEM_BEGIN)
    if blocks > MAX_CHAIN_CERTIFICATES:
        raise _shape_error(what, f"{blocks} certificates; a DCAP chain has at most 3")


def load_pem_chain(pem: bytes, *, what: str) -> tuple[x509.Certificate, ...]:
    """Decode a PEM certificate list that passes ``check_pem_chain_size``."""
    check_pem_chain_size(pem, what=what)
    try:
        return tuple(x509.load_pem_x509_certificates(pem))
    except X509_DECODE_ERRORS as exc:
        raise CollateralFormatError(
            f"{what}: not a PEM certificate chain", code="chain_malformed"
        ) from exc


def _pem_bytes(pem: str, what: str) -> bytes:
    try:
        return pem.rstrip("\0").encode()
    except UnicodeEncodeError as exc:
        raise CollateralFormatError(
            f"{what}: not encodable as UTF-8", code="collateral_malformed"
        ) from exc


class ChainValidator:
    """Fixed-shape certificate chains under one pinned trust root: no path building.

    Each chain must have exactly the shape Intel issues (see ``MAX_CHAIN_CERTIFICATES``); every
    link is checked directly (issuer name and signature of the certificate above it), the top
    one against the pinned root. Only then is the Web PKI profile (key usage, basic
    constraints, extensions) checked, on that one path. Structure does not depend on time, so
    the PEM forms are cached by their text; validity windows are checked by the caller.
    """

    def __init__(self, root: TrustRoot, *, cache_size: int = 256) -> None:
        self._root = root
        self._root_der = root.certificate.public_bytes(Encoding.DER)
        self._store = Store([root.certificate])
        # Intel's leaf certificates (PCK, TCB Signing) carry no subjectAltName and no EKU;
        # everything else follows the Web PKI profile.
        self._ee_policy = (
            ExtensionPolicy.webpki_defaults_ee()
            .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
            .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
        )
        self._ca_policy = ExtensionPolicy.webpki_defaults_ca()
        cached = functools.lru_cache(maxsize=cache_size)
        self._pck_pem = cached(self._pck_pem_uncached)
        self._signing_pem = cached(self._signing_pem_uncached)
        self._crl_issuer_pem = cached(self._crl_issuer_pem_uncached)

    @property
    def root(self) -> TrustRoot:
        return self._root

    # -- the three shapes -------------------------------------------------------------------

    def pck_chain(self, certs: tuple[x509.Certificate, ...], *, what: str) -> VerifiedChain:
        """[PCK leaf, PCK Platform/Processor CA] or the same with the pinned root appended."""
        return self._checked(what, lambda: self._pck(certs, what))

    def pck_chain_pem(self, pem: str, *, what: str) -> VerifiedChain:
        return self._pck_pem(pem, what)

    def signing_chain_pem(self, pem: str) -> VerifiedChain:
        """Exactly [the root's pinned TCB Signing certificate, root]. TCB info and QE identity
        carry the same chain, so it is checked (and named in messages) once for both."""
        return self._signing_pem(pem, "collateral signing chain")

    def crl_issuer_chain_pem(self, pem: str, *, what: str) -> VerifiedChain:
        """Exactly [a CA issued by the root, root]; which CA it must be is the caller's check."""
        return self._crl_issuer_pem(pem, what)

    # -- implementation ---------------------------------------------------------------------

    def _pck_pem_uncached(self, pem: str, what: str) -> VerifiedChain:
        certs = load_pem_chain(_pem_bytes(pem, what), what=what)
        return self.pck_chain(certs, what=what)

    def _pck(self, certs: tuple[x509.Certificate, ...], what: str) -> VerifiedChain:
        if len(certs) not in (2, 3):
            raise _shape_error(what, f"{len(certs)} certificates; needs leaf, PCK CA (, root)")
        leaf, ca = certs[0], certs[1]
        subjects = self._distinct_subjects(certs, what)
        if len(certs) == 3:
            self._is_root(certs[2], what)
        ca_name = _cn(subjects[1])
        if not ca_name.endswith(_PCK_CA_NAMES):
            raise _shape_error(what, f"'{ca_name}' is neither a PCK Platform CA nor a Processor CA")
        self._issued_by_root(ca, what)
        _issued_by(leaf, ca, what)
        return self._profile(leaf, (ca,), what, leaf_is_ca=False)

    def _signing_pem_uncached(self, pem: str, what: str) -> VerifiedChain:
        def check() -> VerifiedChain:
            certs = load_pem_chain(_pem_bytes(pem, what), what=what)
            signer = self._root.tcb_signer
            if not certs or not signer.matches(certs[0]):
                name = _cn(certs[0].subject) if certs else "nothing"
                raise VerificationError(
                    f"{what}: signed by '{name}', not by the TCB Signing certificate "
                    f"pinned for {self._root.name}",
                    code="collateral_signer_untrusted",
                )
            if len(certs) != 2:
                raise _shape_error(what, f"{len(certs)} certificates; needs TCB Signing, root")
            self._distinct_subjects(certs, what)
            self._is_root(certs[1], what)
            self._issued_by_root(certs[0], what)
            return self._profile(certs[0], (), what, leaf_is_ca=False)

        return self._checked(what, check)

    def _crl_issuer_pem_uncached(self, pem: str, what: str) -> VerifiedChain:
        def check() -> VerifiedChain:
            certs = load_pem_chain(_pem_bytes(pem, what), what=what)
            if len(certs) != 2:
                raise _shape_error(what, f"{len(certs)} certificates; needs CA, root")
            self._distinct_subjects(certs, what)
            self._is_root(certs[1], what)
            self._issued_by_root(certs[0], what)
            return self._profile(certs[0], (), what, leaf_is_ca=True)

        return self._checked(what, check)

    def _checked(self, what: str, check: Callable[[], VerifiedChain]) -> VerifiedChain:
        try:
            return check()
        except X509_DECODE_ERRORS as exc:
            raise VerificationError(
                f"{what}: malformed certificate: {exc}", code="chain_malformed"
            ) from exc

    @staticmethod
    def _distinct_subjects(certs: tuple[x509.Certificate, ...], what: str) -> tuple[x509.Name, ...]:
        subjects = tuple(cert.subject for cert in certs)
        if len(set(subjects)) != len(certs):
            raise _shape_error(what, "two certificates have the same subject")
        return subjects

    def _is_root(self, cert: x509.Certificate, what: str) -> None:
        if cert.public_bytes(Encoding.DER) != self._root_der:
            raise VerificationError(
                f"{what}: certificate chain does not lead to {self._root.name} "
                f"(its last certificate is '{_cn(cert.subject)}')",
                code="chain_untrusted",
            )

    def _issued_by_root(self, cert: x509.Certificate, what: str) -> None:
        try:
            _issued_by(cert, self._root.certificate, what)
        except VerificationError as exc:
            raise VerificationError(
                f"{what}: certificate chain does not lead to {self._root.name}: {exc.message}",
                code="chain_untrusted",
            ) from exc

    def _profile(
        self,
        leaf: x509.Certificate,
        intermediates: tuple[x509.Certificate, ...],
        what: str,
        *,
        leaf_is_ca: bool,
    ) -> VerifiedChain:
        """The Web PKI profile on the one path already checked link by link: at most one
        intermediate, distinct subjects, so the verifier has exactly one path to consider."""
        path = (leaf, *intermediates, self._root.certificate)
        # Any instant inside every window gives the time-independent verdict, which is what
        # gets cached; windows are checked against the evaluation time by the caller.
        latest_start = max(c.not_valid_before_utc for c in path)
        earliest_end = min(c.not_valid_after_utc for c in path)
        if latest_start > earliest_end:
            raise VerificationError(
                f"{what}: the certificates are never valid at the same time", code="expired"
            )
        if leaf_is_ca != _is_ca(leaf):
            raise VerificationError(
                f"{what}: '{_cn(leaf.subject)}' is {'not ' if leaf_is_ca else ''}a CA certificate",
                code="chain_untrusted",
            )
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(latest_start)
            .extension_policies(
                ca_policy=self._ca_policy,
                ee_policy=self._ca_policy if leaf_is_ca else self._ee_policy,
            )
            .build_client_verifier()
        )
        try:
            built = verifier.verify(leaf, list(intermediates)).chain
        except X509VerificationError as exc:
            raise VerificationError(
                f"{what}: certificate chain does not lead to {self._root.name}: {exc}",
                code="chain_untrusted",
            ) from exc
        if tuple(built) != path:  # pragma: no cover - one candidate path exists
            raise VerificationError(f"{what}: unexpected certificate path", code="chain_untrusted")
        return VerifiedChain(certificates=path, validity=tuple(_dated(c, what) for c in path))


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    """``cert`` names ``issuer`` as its issuer and carries a valid signature by its key
    (``verify_directly_issued_by`` checks both; names are decoded only for the message)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError) as exc:
        if cert.issuer != issuer.subject:
            problem = f"is issued by '{_cn(cert.issuer)}', not by '{_cn(issuer.subject)}'"
        else:
            problem = f"does not carry a valid signature by '{_cn(issuer.subject)}'"
        raise VerificationError(
            f"{what}: '{_cn(cert.subject)}' {problem}", code="chain_untrusted"
        ) from exc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _dated(cert: x509.Certificate, what: str) -> Dated:
    return Dated(
        what=f"{what}: certificate '{_cn(cert.subject)}'",
        not_before=_ts(cert.not_valid_before_utc),
        not_after=_ts(cert.not_valid_after_utc),
    )


@dataclass(frozen=True, slots=True, eq=False)  # identity: parse_crl caches one per DER
class ParsedCrl:
    crl: x509.CertificateRevocationList
    issuer: x509.Name
    validity: Dated  # thisUpdate .. nextUpdate - 1: at nextUpdate the CRL is stale
    revoked_serials: frozenset[int]

    def check_issued_by(self, issuer: x509.Certificate, what: str) -> None:
        if self.issuer != issuer.subject:
            raise VerificationError(
                f"{what} is issued by '{_cn(self.issuer)}', not by '{_cn(issuer.subject)}'",
                code="crl_invalid",
            )
        key = certificate_p256_key(issuer, f"{what} issuer")
        try:
            valid = self.crl.is_signature_valid(key)
        except X509_DECODE_ERRORS:
            valid = False
        if not valid:
            raise VerificationError(f"{what} signature is invalid", code="crl_invalid")

    def check_not_revoked(self, cert: x509.Certificate, what: str) -> None:
        if cert.serial_number in self.revoked_serials:
            raise VerificationError(
                f"{what} '{_cn(cert.subject)}' (serial {cert.serial_number:x}) is revoked",
                code="certificate_revoked",
            )


@functools.lru_cache(maxsize=256)
def parse_crl(der: bytes, what: str) -> ParsedCrl:
    try:
        crl = x509.load_der_x509_crl(der)
        issuer = crl.issuer
        _cn(issuer)  # decode the name now, not in the middle of a check
        this_update = crl.last_update_utc
        next_update = crl.next_update_utc
        revoked = frozenset(entry.serial_number for entry in crl)
    except X509_DECODE_ERRORS as exc:
        raise CollateralFormatError(
            f"{what} is not a DER CRL: {exc}", code="crl_malformed"
        ) from exc
    if next_update is None:
        raise CollateralFormatError(f"{what} has no nextUpdate", code="crl_malformed")
    return ParsedCrl(
        crl=crl,
        issuer=issuer,
        validity=Dated(what=what, not_before=_ts(this_update), not_after=_ts(next_update) - 1),
        revoked_serials=revoked,
    )


def certificate_p256_key(cert: x509.Certificate, what: str) -> ec.EllipticCurvePublicKey:
    try:
        key = cert.public_key()
    except X509_DECODE_ERRORS as exc:
        raise VerificationError(f"{what} has a malformed key", code="chain_malformed") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise VerificationError(f"{what} key is not ECDSA P-256", code="chain_malformed")
    return key


def p256_public_key(raw_xy: bytes) -> ec.EllipticCurvePublicKey | None:
    """Raw x||y (64 bytes) → key, or None when it is not a point on P-256."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw_xy)
    except ValueError:
        return None


def ecdsa_p256_verify(key: ec.EllipticCurvePublicKey, raw_rs: bytes, message: bytes) -> bool:
    """Verify a raw r||s ECDSA-P256-SHA256 signature."""
    r = int.from_bytes(raw_rs[:32], "big")
    s = int.from_bytes(raw_rs[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), message, _SHA256)
    except InvalidSignature:
        return False
    return True


def p256_point(key: ec.EllipticCurvePublicKey) -> bytes:
    """The key as its uncompressed SEC1 point (65 bytes): what identifies it exactly."""
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


class SignatureMemo:
    """ECDSA-P256-SHA256 verification that remembers what verified, exactly.

    An entry is the exact (public key point, raw r||s signature, message) triple of a
    signature that verified; it is looked up by those bytes, so a triple differing in any bit
    is verified afresh. Only successes are kept (a failure is recomputed every time) and at
    most ``maxsize`` of them, least recently used first out. Thread-safe.
    """

    def __init__(self, *, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        self._verified: OrderedDict[tuple[bytes, bytes, bytes], None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._verified)

    def verify(
        self, key: ec.EllipticCurvePublicKey, point: bytes, raw_rs: bytes, message: bytes
    ) -> bool:
        """``ecdsa_p256_verify(key, raw_rs, message)``; ``point`` must be ``p256_point(key)``."""
        entry = (point, raw_rs, message)
        with self._lock:
            if entry in self._verified:
                self._verified.move_to_end(entry)
                return True
        if not ecdsa_p256_verify(key, raw_rs, message):
            return False
        with self._lock:
            self._verified[entry] = None
            if len(self._verified) > self._maxsize:
                self._verified.popitem(last=False)
        return True
