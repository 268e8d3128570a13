"""Attestation tokens (docs/design.md §8): JWTs signed ES256 with the verifier's key.

The verifier keeps one P-256 key in its state directory, created on first start, and publishes
the public half as a JWKS (``/.well-known/jwks.json``). Its ``kid`` is the RFC 7638 thumbprint
of the public key, so the same key always has the same ``kid`` and anyone can recompute it.

``verify_token`` is what clients and tests use. It trusts nothing in the token before the
signature has been checked with a key from the caller's JWKS: the algorithm is pinned to ES256
(never taken from the header, which is how ``alg: none`` and HS256-with-the-public-key forgeries
work), keys named by ``jku``/``jwk``/``x5u`` headers are ignored, and time comes from the caller
(``now``) so that expiry is decided by one clock that tests control. Errors never carry token
contents beyond the ``kid``: tokens hold nonces and measurements that have no business in logs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import stat
from calendar import timegm
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ec import (
    ECDSA,
    SECP256R1,
    EllipticCurvePrivateKey,
    EllipticCurvePublicKey,
    generate_private_key,
)
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm

from cllm._internal.files import ensure_dir, publish_file
from cllm.errors import CllmError, VerificationError

__all__ = [
    "ALGORITHM",
    "KEY_FILE",
    "RESERVED_CLAIMS",
    "TokenSigner",
    "jwk_thumbprint",
    "verify_token",
]

_log = logging.getLogger(__name__)

ALGORITHM: Final = "ES256"
KEY_FILE: Final = Path("verifier") / "token-key.pem"
# Claims ``issue`` sets itself; a caller supplying one is a bug, not something to merge.
RESERVED_CLAIMS: Final = frozenset({"iss", "iat", "exp", "jti"})

# A compact JWS is exactly three base64url segments. PyJWT's base64 decoding silently drops
# characters outside the alphabet, so the shape is checked here to reject garbage early and
# deterministically (the signature would fail anyway: it covers the raw segments). The signature
# may be empty so that an ``alg: none`` token is reported as the bad algorithm it is.
_COMPACT: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Attestation tokens are a few KiB; anything far larger is refused before any decoding work.
_MAX_TOKEN_CHARS: Final = 64 * 1024
_JTI_BYTES: Final = 16  # 128 bits
_ES256: Final = ECDSA(hashes.SHA256())
# The JSON encodings PyJWT uses: compact; header keys sorted, payload keys in claim order.
_HEADER_JSON: Final = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
_PAYLOAD_JSON: Final = json.JSONEncoder(separators=(",", ":")).encode


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _public_jwk(public_key: EllipticCurvePublicKey) -> dict[str, str]:
    """The required members (kty, crv, x, y) of the key's JWK, as PyJWT encodes them."""
    jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
    return {name: str(jwk[name]) for name in ("kty", "crv", "x", "y")}


def jwk_thumbprint(public_key: EllipticCurvePublicKey) -> str:
    """RFC 7638 thumbprint: base64url SHA-256 of the required members, sorted, no whitespace."""
    canonical = json.dumps(_public_jwk(public_key), sort_keys=True, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def _key_error(message: str) -> CllmError:
    return CllmError(message, code="token_key_invalid")


@dataclass(frozen=True)
class TokenSigner:
    """The verifier's ES256 signing key. Equal signers have the same ``kid``, i.e. the same key."""

    key: EllipticCurvePrivateKey = field(repr=False, compare=False)
    kid: str = field(init=False)
    _header: bytes = field(init=False, repr=False, compare=False)  # base64url JWS header

    def __post_init__(self) -> None:
        # ES256 is defined on P-256 only; a key on another curve would sign tokens no
        # conforming verifier accepts, so it is refused here rather than at first use.
        if not isinstance(self.key, EllipticCurvePrivateKey) or not isinstance(
            self.key.curve, SECP256R1
        ):
            raise _key_error("the token signing key must be an EC P-256 private key")
        object.__setattr__(self, "kid", jwk_thumbprint(self.key.public_key()))
        header = {"alg": ALGORITHM, "kid": self.kid, "typ": "JWT"}
        object.__setattr__(self, "_header", _b64url(_HEADER_JSON(header).encode()).encode())

    @classmethod
    def from_private_key(cls, key: EllipticCurvePrivateKey) -> TokenSigner:
        return cls(key)

    @classmethod
    def load_or_create(cls, state_dir: Path) -> TokenSigner:
        """The key at ``<state_dir>/verifier/token-key.pem``, created (0600) on first use.

        Creation is first-writer-wins: two verifiers starting together each try to publish a
        fresh key, one of them loses, and both then read back and use the file that won.
        """
        ensure_dir(state_dir)
        path = state_dir / KEY_FILE
        if not path.exists():
            pem = generate_private_key(SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            if publish_file(path, pem, replace=False):
                _log.info("created token signing key %s", path)
        return cls(_read_key(path))

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWK Set to publish at ``/.well-known/jwks.json``."""
        jwk = _public_jwk(self.key.public_key())
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}]}

    def issue(self, claims: Mapping[str, Any], *, now: int, lifetime: int, issuer: str) -> str:
        """Sign ``claims`` plus ``iss``, ``iat`` (= ``now``), ``exp`` (= ``now + lifetime``) and a
        random ``jti``. ``now`` is Unix seconds from the caller's clock, never read here."""
        if not _is_int(now) or now < 0:
            raise ValueError(f"now must be a non-negative integer, got {now!r}")
        if not _is_int(lifetime) or lifetime <= 0:
            raise ValueError(f"lifetime must be a positive integer, got {lifetime!r}")
        if not issuer:
            raise ValueError("issuer must not be empty")
        clash = sorted(RESERVED_CLAIMS.intersection(claims))
        if clash:
            raise ValueError(f"claims set by issue() itself: {', '.join(clash)}")
        payload = {
            **claims,
            "iss": issuer,
            "iat": now,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(_JTI_BYTES),
        }
        if isinstance(payload.get("nbf"), datetime):  # as PyJWT does for its time claims
            payload["nbf"] = timegm(payload["nbf"].utctimetuple())
        # The compact JWS PyJWT's jwt.encode writes (same header, same JSON), built directly:
        # the header is fixed per key, so it is encoded once.
        signing_input = self._header + b"." + _b64url(_PAYLOAD_JSON(payload).encode()).encode()
        r, s = decode_dss_signature(self.key.sign(signing_input, _ES256))
        signature = _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return f"{signing_input.decode('ascii')}.{signature}"


def _read_key(path: Path) -> EllipticCurvePrivateKey:
    try:
        mode = path.stat().st_mode
        pem = path.read_bytes()
    except OSError as exc:
        raise CllmError(f"cannot read {path}: {exc.strerror}", code="state_dir") from exc
    # Whoever can read this key can mint "affirming" tokens: refuse one that others can read,
    # as ssh does for its keys, rather than keep signing with a possibly copied key.
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise _key_error(f"{path} is accessible to group or others (mode {mode & 0o777:o})")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:  # garbage, encrypted, or unsupported PEM
        raise _key_error(f"{path} is not an unencrypted PKCS#8 PEM private key") from exc
    if not isinstance(key, EllipticCurvePrivateKey):
        raise _key_error(f"{path} does not hold an EC private key")
    return key


def _is_int(value: object) -> bool:
    # bool is an int subclass; ``"exp": true`` is malformed, not 1970-01-01T00:00:01Z.
    return isinstance(value, int) and not isinstance(value, bool)


def _fail(code: str, message: str) -> VerificationError:
    return VerificationError(message, code=code)


def _describe_kid(kid: str) -> str:
    # The kid is attacker-chosen text; keep what reaches messages short and quoted.
    return repr(kid[:64] + ("..." if len(kid) > 64 else ""))


def _key_for(jwks: Mapping[str, Any], kid: str) -> EllipticCurvePublicKey:
    """The P-256 public key published under ``kid``. A malformed entry or JWKS is the caller's
    configuration problem (``token_jwks_invalid``), not a property of the token."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise _fail("token_jwks_invalid", "the JWKS has no 'keys' list")
    matches = [entry for entry in keys if isinstance(entry, Mapping) and entry.get("kid") == kid]
    if not matches:
        raise _fail("token_unknown_kid", f"no key with kid {_describe_kid(kid)} in the JWKS")
    if len(matches) > 1:
        # Two keys under one kid would let the JWKS order decide which key a token is checked
        # against; refuse the ambiguity instead.
        raise _fail(
            "token_jwks_invalid", f"the JWKS has several keys with kid {_describe_kid(kid)}"
        )
    entry = dict(matches[0])
    if entry.get("alg", ALGORITHM) != ALGORITHM or entry.get("use", "sig") != "sig":
        raise _fail("token_jwks_invalid", f"key {_describe_kid(kid)} is not an ES256 signing key")
    if entry.get("kty") != "EC" or entry.get("crv") != "P-256" or "d" in entry:
        raise _fail("token_jwks_invalid", f"key {_describe_kid(kid)} is not a P-256 public key")
    try:
        public_key = jwt.PyJWK(entry, algorithm=ALGORITHM).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
        raise _fail("token_jwks_invalid", f"key {_describe_kid(kid)} cannot be decoded") from exc
    if not isinstance(public_key, EllipticCurvePublicKey) or not isinstance(
        public_key.curve, SECP256R1
    ):
        raise _fail("token_jwks_invalid", f"key {_describe_kid(kid)} is not a P-256 public key")
    return public_key


def verify_token(
    token: str,
    *,
    jwks: Mapping[str, Any],
    now: int,
    issuer: str | None = None,
    leeway: int = 0,
) -> dict[str, Any]:
    """Check ``token`` against ``jwks`` at time ``now`` (Unix seconds) and return its claims.

    Raises ``VerificationError`` with ``code`` one of ``token_malformed``,
    ``token_bad_algorithm``, ``token_unknown_kid``, ``token_bad_signature``, ``token_expired``,
    ``token_not_yet_valid``, ``token_bad_issuer`` (and ``token_jwks_invalid`` for a bad JWKS).
    A token is expired from ``exp + leeway`` on (RFC 7519: "on or after"), and not yet valid
    while ``iat`` or ``nbf`` is later than ``now + leeway``.
    """
    if not _is_int(now):
        raise ValueError(f"now must be an integer, got {now!r}")
    if not _is_int(leeway) or leeway < 0:
        raise ValueError(f"leeway must be a non-negative integer, got {leeway!r}")
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
        raise _fail("token_malformed", "not a token (wrong type or too long)")
    if not _COMPACT.fullmatch(token):
        raise _fail("token_malformed", "not a compact JWS (three base64url segments)")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise _fail("token_malformed", "the token header cannot be decoded") from exc

    # The algorithm is checked against the one we accept before any key is looked at: a token
    # must never choose how it is verified.
    if header.get("alg") != ALGORITHM:
        raise _fail("token_bad_algorithm", f"only {ALGORITHM} tokens are accepted")
    # RFC 7515 4.1.11: extensions listed in "crit" must be understood; we understand none.
    if "crit" in header:
        raise _fail("token_malformed", "the token header lists critical extensions")
    kid = header.get("kid")
    if kid is None:
        raise _fail("token_unknown_kid", "the token header has no kid")
    if not isinstance(kid, str):
        raise _fail("token_malformed", "the token header kid is not a string")
    public_key = _key_for(jwks, kid)

    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],
            # Signature only: PyJWT would check exp/iat/nbf against its own clock. Time and
            # issuer are checked below, with the caller's ``now``.
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_iss": False,
                "verify_aud": False,
            },
        )
    except jwt.InvalidSignatureError as exc:
        raise _fail("token_bad_signature", f"bad signature (kid {_describe_kid(kid)})") from exc
    except jwt.InvalidAlgorithmError as exc:  # unreachable after the header check; kept typed
        raise _fail("token_bad_algorithm", f"only {ALGORITHM} tokens are accepted") from exc
    except jwt.InvalidTokenError as exc:
        raise _fail(
            "token_malformed", f"the token cannot be decoded (kid {_describe_kid(kid)})"
        ) from exc

    _check_times(claims, now=now, leeway=leeway)
    if issuer is not None and claims.get("iss") != issuer:
        raise _fail("token_bad_issuer", "the token was not issued by the expected issuer")
    return claims


def _check_times(claims: Mapping[str, Any], *, now: int, leeway: int) -> None:
    # Our tokens always carry iat and exp; a token without them would never expire.
    for name in ("iat", "exp"):
        if not _is_int(claims.get(name)):
            raise _fail("token_malformed", f"the token has no integer {name!r} claim")
    if "nbf" in claims and not _is_int(claims["nbf"]):
        raise _fail("token_malformed", "the token 'nbf' claim is not an integer")
    if claims["iat"] > now + leeway or claims.get("nbf", now) > now + leeway:
        raise _fail("token_not_yet_valid", "the token is not valid yet")
    if now >= claims["exp"] + leeway:
        raise _fail("token_expired", "the token has expired")
