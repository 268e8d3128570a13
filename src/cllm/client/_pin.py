"""The user's anchors for a verifier service: its URL must be HTTPS (plain HTTP only on this
machine's loopback), and its token-signing key may be pinned by its RFC 7638 thumbprint, so a
verifier URL that starts serving another key (taken over, or a look-alike) is refused.

A pin is given as the thumbprint itself (43 base64url characters, the verifier's ``kid``), or as
the key: a PEM public key, or a JWK, inline or in a file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from cllm._internal.net import is_loopback_host
from cllm.errors import CllmError
from cllm.token import jwk_thumbprint

__all__ = [
    "check_verifier_url",
    "is_loopback_host",
    "jwks_thumbprints",
    "parse_verifier_key",
]

_THUMBPRINT: Final = re.compile(r"[A-Za-z0-9_-]{43}")
_MAX_KEY_TEXT: Final = 64 * 1024


def check_verifier_url(url: str) -> str:
    """``url`` without its trailing slashes; refuses anything but ``https://`` and, on
    loopback only, ``http://`` (``verifier_insecure``): whoever sits on the path of a plain
    HTTP verifier decides the verdict."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:
        raise CllmError(f"not a URL: {url!r}", code="verifier_insecure") from exc
    if parts.scheme == "https" and host:
        return url.rstrip("/")
    if parts.scheme == "http" and is_loopback_host(host):
        return url.rstrip("/")
    raise CllmError(
        f"refusing the verifier {url!r}: a verifier is reached over https:// (http:// only on "
        "this machine's loopback), since whoever can change its answers decides the verdict",
        code="verifier_insecure",
    )


def _key_error(message: str) -> CllmError:
    return CllmError(message, code="verifier_key_invalid")


def _thumbprint_of_key(key: object) -> str:
    if not isinstance(key, EllipticCurvePublicKey) or not isinstance(key.curve, SECP256R1):
        raise _key_error("the verifier key is not a P-256 public key (verifiers sign ES256)")
    return jwk_thumbprint(key)


def _thumbprint_of_jwk(entry: Mapping[str, Any]) -> str:
    if entry.get("kty") != "EC" or entry.get("crv") != "P-256" or "d" in entry:
        raise _key_error("the verifier key is not a P-256 public JWK")
    try:
        key = jwt.PyJWK(dict(entry), algorithm="ES256").key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
        raise _key_error("the verifier JWK cannot be decoded") from exc
    return _thumbprint_of_key(key)


def _from_text(text: str) -> str:
    text = text.strip()
    if _THUMBPRINT.fullmatch(text):
        return text
    if text.startswith("-----BEGIN"):
        try:
            key = load_pem_public_key(text.encode())
        except (ValueError, TypeError) as exc:
            raise _key_error("the verifier key is not a PEM public key") from exc
        return _thumbprint_of_key(key)
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise _key_error("the verifier key is not valid JWK JSON") from exc
        if isinstance(doc, dict) and isinstance(doc.get("keys"), list) and len(doc["keys"]) == 1:
            doc = doc["keys"][0]  # a JWKS of exactly one key, as /.well-known/jwks.json serves
        if not isinstance(doc, dict):
            raise _key_error("the verifier key is not a JWK object")
        return _thumbprint_of_jwk(doc)
    raise _key_error(
        "a verifier key is a JWK thumbprint (43 base64url characters), a PEM public key or "
        "a JWK, inline or in a file"
    )


def parse_verifier_key(value: str) -> str:
    """The RFC 7638 thumbprint that ``value`` names: a thumbprint, PEM or JWK text, or the
    path of a file holding a PEM or JWK (``verifier_key_invalid`` otherwise)."""
    if len(value) > _MAX_KEY_TEXT:
        raise _key_error("the verifier key is too long")
    stripped = value.strip()
    if _THUMBPRINT.fullmatch(stripped) or stripped.startswith(("-----BEGIN", "{")):
        return _from_text(stripped)
    path = Path(value).expanduser()
    try:
        data = path.read_bytes()[: _MAX_KEY_TEXT + 1]
    except OSError as exc:
        raise _key_error(
            f"{value!r} is neither a key thumbprint nor a readable key file ({exc.strerror})"
        ) from exc
    try:
        return _from_text(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _key_error(f"{value} is not a text key file") from exc


def jwks_thumbprints(jwks: Mapping[str, Any]) -> dict[str, str]:
    """``{kid: thumbprint}`` of every usable P-256 key in a JWKS, the thumbprint computed
    here from the key itself (a ``kid`` is only a label the verifier chose)."""
    found: dict[str, str] = {}
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    for entry in keys if isinstance(keys, list) else []:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("kid"), str):
            continue
        try:
            found[entry["kid"]] = _thumbprint_of_jwk(entry)
        except CllmError:
            continue
    return found
