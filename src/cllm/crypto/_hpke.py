"""Sealed requests: HPKE (RFC 9180) base mode to the server's attested X25519 key.

Suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, all from pyhpke (no HPKE is
written here). The client seals the request body with ``info = b"cllm/1 request"`` and
``aad = METHOD SP PATH``, so a proxy that can neither read nor forge the body cannot replay it
to another route either. Both ends then export the response secret from the same context, which
is what ties the sealed response stream (``_chunks``) to exactly this request.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pyhpke import (
    AEADId,
    CipherSuite,
    ContextInterface,
    KDFId,
    KEMId,
    KEMKey,
    KEMKeyPair,
    OpenError,
)

from cllm.crypto._chunks import (
    RESPONSE_EXPORT_CONTEXT,
    RESPONSE_NONCE_SIZE,
    RESPONSE_SECRET_SIZE,
    ResponseOpener,
    ResponseSealer,
)
from cllm.errors import CryptoError

__all__ = [
    "AEAD_ID",
    "ENCRYPTION_HEADER",
    "ENCRYPTION_VALUE",
    "ENC_HEADER",
    "HPKE_INFO",
    "KDF_ID",
    "KEM_ID",
    "PUBLIC_KEY_SIZE",
    "REQUEST_CONTENT_TYPE",
    "RESPONSE_CONTENT_TYPE",
    "HpkeKeyPair",
    "SealedRequest",
    "decode_enc_header",
    "encode_enc_header",
    "open_request",
    "request_aad",
    "seal_request",
]

HPKE_INFO: Final = b"cllm/1 request"
ENCRYPTION_HEADER: Final = "X-Cllm-Encryption"
ENCRYPTION_VALUE: Final = "hpke-v1"
ENC_HEADER: Final = "X-Cllm-Hpke-Enc"
REQUEST_CONTENT_TYPE: Final = "application/cllm-hpke"
RESPONSE_CONTENT_TYPE: Final = "application/cllm-hpke-chunks"
KEM_ID: Final = KEMId.DHKEM_X25519_HKDF_SHA256
KDF_ID: Final = KDFId.HKDF_SHA256
AEAD_ID: Final = AEADId.AES128_GCM
PUBLIC_KEY_SIZE: Final = 32  # Npk = Nenc for X25519

_SUITE: Final = CipherSuite.new(KEM_ID, KDF_ID, AEAD_ID)
# RFC 9110 token: what an HTTP method may be made of.
_METHOD: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# 32 bytes in base64url without padding are exactly 43 characters.
_ENC_TEXT: Final = re.compile(r"[A-Za-z0-9_-]{43}")


class HpkeKeyPair:
    """The server's per-boot X25519 HPKE key. Lives in memory only: nothing here serialises
    the private half, and the object refuses to be pickled or shown."""

    __slots__ = ("_kem_private", "_public")

    def __init__(self, private_key: x25519.X25519PrivateKey) -> None:
        self._kem_private = KEMKey.from_pyca_cryptography_key(private_key)
        self._public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls) -> HpkeKeyPair:
        return cls(x25519.X25519PrivateKey.generate())

    @classmethod
    def _derive(cls, ikm: bytes) -> HpkeKeyPair:
        """RFC 9180 DeriveKeyPair: for test vectors only (a fixed seed is a published key)."""
        pair = _SUITE.kem.derive_key_pair(ikm)
        private = pair.private_key.raw
        if not isinstance(private, x25519.X25519PrivateKey):  # pragma: no cover - pyhpke's type
            raise TypeError("pyhpke derived a key of an unexpected type")
        return cls(private)

    def public_bytes(self) -> bytes:
        """The raw 32-byte public key, as published in the evidence binding (``hpke_key``)."""
        return self._public

    def __repr__(self) -> str:
        return f"HpkeKeyPair(public={self._public.hex()})"

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("an HpkeKeyPair holds a private key and is never serialised")


def request_aad(method: str, path: str) -> bytes:
    """``METHOD SP PATH`` (e.g. ``b"POST /v1/chat/completions"``): the associated data that binds
    a sealed body to its route. Any query string is dropped; the path is taken as sent on the
    request line (for cllm's routes, plain ASCII)."""
    if not _METHOD.fullmatch(method):
        raise ValueError(f"{method!r} is not an HTTP method")
    path = path.split("?", 1)[0]
    if not path.startswith("/"):
        raise ValueError(f"{path!r} is not an absolute URL path")
    return method.encode("ascii") + b" " + path.encode("utf-8")


def encode_enc_header(enc: bytes) -> str:
    """The ``X-Cllm-Hpke-Enc`` header value: base64url without padding."""
    return base64.urlsafe_b64encode(enc).rstrip(b"=").decode("ascii")


def decode_enc_header(value: str) -> bytes:
    """The 32-byte ``enc`` from an ``X-Cllm-Hpke-Enc`` header; strict (canonical base64url
    without padding, exactly 32 bytes), else ``hpke_enc_invalid``."""
    if not _ENC_TEXT.fullmatch(value):
        raise CryptoError(
            f"{ENC_HEADER} must be 32 bytes in unpadded base64url", code="hpke_enc_invalid"
        )
    try:
        enc = base64.urlsafe_b64decode(value + "=")
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - the pattern rules it out
        raise CryptoError(f"{ENC_HEADER} is not base64url", code="hpke_enc_invalid") from exc
    # One value, one spelling: unused low bits in the last character must be zero.
    if encode_enc_header(enc) != value:
        raise CryptoError(f"{ENC_HEADER} is not canonical base64url", code="hpke_enc_invalid")
    return enc


@dataclass(frozen=True, slots=True)
class SealedRequest:
    """A sealed request body (client side), and the means to open its response."""

    enc: bytes
    ciphertext: bytes
    # Exported from the sender context; only the holder of this request can open the answer.
    _response_secret: bytes = field(repr=False, compare=False)

    def headers(self) -> dict[str, str]:
        """The three request headers that go with ``ciphertext`` as the body."""
        return {
            ENCRYPTION_HEADER: ENCRYPTION_VALUE,
            ENC_HEADER: encode_enc_header(self.enc),
            "Content-Type": REQUEST_CONTENT_TYPE,
        }

    def opener(self) -> ResponseOpener:
        """A fresh incremental opener for this request's response stream."""
        return ResponseOpener(self._response_secret, enc=self.enc)

    def open_response(self, body: bytes) -> bytes:
        """The plaintext of a complete response body (all records, joined)."""
        opener = self.opener()
        plaintext = b"".join(opener.feed(body))
        opener.close()
        return plaintext


def seal_request(public_key: bytes, body: bytes, *, aad: bytes) -> SealedRequest:
    """Seal ``body`` to the server's raw X25519 ``public_key`` (the binding's ``hpke_key``)."""
    return _seal_request(public_key, body, aad=aad, ephemeral=None)


def open_request(
    key: HpkeKeyPair,
    *,
    enc: bytes,
    ciphertext: bytes,
    aad: bytes,
    random: Callable[[int], bytes] = os.urandom,
) -> tuple[bytes, ResponseSealer]:
    """Open a sealed request body (server side): the plaintext body and the sealer for its
    response. ``random`` supplies the 16-byte response nonce."""
    context = _recipient_context(key, enc, HPKE_INFO)
    try:
        body = context.open(ciphertext, aad)
    except OpenError as exc:
        raise CryptoError(
            "the request body does not open (wrong key, enc, route or tampered ciphertext)",
            code="hpke_open_failed",
        ) from exc
    secret = context.export(RESPONSE_EXPORT_CONTEXT, RESPONSE_SECRET_SIZE)
    response_nonce = random(RESPONSE_NONCE_SIZE)
    return body, ResponseSealer(secret, enc=enc, response_nonce=response_nonce)


# -- seams below are private: the ephemeral key is injected only to reproduce test vectors --


def _seal_request(
    public_key: bytes, body: bytes, *, aad: bytes, ephemeral: KEMKeyPair | None
) -> SealedRequest:
    enc, context = _sender_context(public_key, HPKE_INFO, ephemeral)
    ciphertext = context.seal(body, aad)
    secret = context.export(RESPONSE_EXPORT_CONTEXT, RESPONSE_SECRET_SIZE)
    return SealedRequest(enc=enc, ciphertext=ciphertext, _response_secret=secret)


def _sender_context(
    public_key: bytes, info: bytes, ephemeral: KEMKeyPair | None
) -> tuple[bytes, ContextInterface]:
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise CryptoError(
            f"an HPKE public key is {PUBLIC_KEY_SIZE} raw bytes, not {len(public_key)}",
            code="hpke_enc_invalid",
        )
    recipient = _SUITE.kem.deserialize_public_key(public_key)
    try:
        return _SUITE.create_sender_context(recipient, info=info, eks=ephemeral)
    except ValueError as exc:
        # cryptography refuses an all-zero X25519 result, i.e. a small-order public key.
        raise CryptoError(
            "the HPKE public key is not a usable X25519 point", code="hpke_enc_invalid"
        ) from exc


def _recipient_context(key: HpkeKeyPair, enc: bytes, info: bytes) -> ContextInterface:
    if len(enc) != PUBLIC_KEY_SIZE:
        raise CryptoError(
            f"enc is {PUBLIC_KEY_SIZE} raw bytes, not {len(enc)}", code="hpke_enc_invalid"
        )
    try:
        return _SUITE.create_recipient_context(enc, key._kem_private, info=info)
    except ValueError as exc:
        raise CryptoError("enc is not a usable X25519 point", code="hpke_enc_invalid") from exc
