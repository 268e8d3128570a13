"""Signed answers: every answer body carries an ECDSA P-256 signature by the attested key.

Signed message: ``b"cllm/1 answer-signature\\x00" || SHA-256(request_body) || SHA-256(answer)``.
The signature travels in-band, as the last member (``"cllm_signature"``) of the answer's last
JSON record, so the same bytes work for a plain JSON body, an SSE stream and an NDJSON stream,
and inside the encrypted channel it is as invisible to a proxy as the answer itself.

``answer`` is every body byte before the ``,`` that opens the member. The member is found by the
last occurrence of the bytes ``,"cllm_signature":``: inside a JSON string a ``"`` is always
escaped, so text the model writes can never contain that sequence unescaped; and after the
member only a closing ``}`` and a constant framing tail may follow, so nothing unsigned can carry
content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)

from cllm.errors import CryptoError

__all__ = [
    "ALLOWED_TAILS",
    "SIGNATURE_ALG",
    "SIGNATURE_CONTEXT",
    "SIGNATURE_MARKER",
    "SIGNATURE_MEMBER",
    "AnswerSigner",
    "SignedAnswer",
    "SigningKey",
    "signature_member",
    "signed_message",
    "verify_answer",
]

SIGNATURE_MEMBER: Final = "cllm_signature"
SIGNATURE_ALG: Final = "ecdsa-p256-sha256"
SIGNATURE_CONTEXT: Final = b"cllm/1 answer-signature\x00"
SIGNATURE_MARKER: Final = b',"' + SIGNATURE_MEMBER.encode() + b'":'
# What may follow the member's closing brace: the record's own "}" and then one of these
# constant framings (plain JSON, NDJSON, SSE without and with the OpenAI end marker).
ALLOWED_TAILS: Final = (b"", b"\n", b"\n\n", b"\n\ndata: [DONE]\n\n")
_MEMBER_KEYS: Final = frozenset({"alg", "request_sha256", "answer_sha256", "sig"})
_HEX_SHA256: Final = re.compile(r"[0-9a-f]{64}")
# Generous for a base64 DER P-256 signature (at most 72 bytes, 96 characters) plus framing;
# anything longer after the marker is refused before it is decoded.
_MAX_MEMBER_TAIL: Final = 1024


def signed_message(request_sha256: bytes, answer_sha256: bytes) -> bytes:
    """The bytes the ECDSA signature covers."""
    return SIGNATURE_CONTEXT + request_sha256 + answer_sha256


def signature_member(*, request_sha256: bytes, answer_sha256: bytes, signature: bytes) -> bytes:
    """``,"cllm_signature":{...}``: the member as appended to the final record, from its leading
    comma to its own closing brace (the record's closing brace is not included)."""
    value = {
        "alg": SIGNATURE_ALG,
        "request_sha256": request_sha256.hex(),
        "answer_sha256": answer_sha256.hex(),
        "sig": base64.b64encode(signature).decode("ascii"),
    }
    return SIGNATURE_MARKER + json.dumps(value, separators=(",", ":")).encode("ascii")


class SigningKey:
    """The server's per-boot ECDSA P-256 answer-signing key. Lives in memory only: nothing
    here serialises the private half, and the object refuses to be pickled or shown."""

    __slots__ = ("_private", "_spki")

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        _require_p256(private_key.curve)
        self._private = private_key
        self._spki = private_key.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        """The key object itself, for ``AnswerSigner`` (it stays in memory; never exported)."""
        return self._private

    def public_spki_der(self) -> bytes:
        """SPKI DER of the public key, as published in the evidence binding (``signing_key``)."""
        return self._spki

    def signer(self, *, request_body: bytes) -> AnswerSigner:
        """An ``AnswerSigner`` for the answer to ``request_body``."""
        return AnswerSigner(self._private, request_body=request_body)

    def __repr__(self) -> str:
        return f"SigningKey(spki_sha256={hashlib.sha256(self._spki).hexdigest()})"

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("a SigningKey holds a private key and is never serialised")


class AnswerSigner:
    """Signs one answer as it is emitted (server side).

    Feed ``update()`` every body byte sent before the final JSON record (SSE ``data: `` prefixes
    and blank lines included), then pass the final record's serialisation to ``sign_record()``
    and send what it returns, followed by the constant tail (``""``, ``"\\n"``, ``"\\n\\n"`` or
    ``"\\n\\ndata: [DONE]\\n\\n"``). ``request_body`` is the plaintext request body received.
    """

    __slots__ = ("_answer", "_finished", "_private", "_request_sha256")

    # Randomised ECDSA (a fresh nonce per signature). The test-vector generator overrides this
    # in a subclass with RFC 6979 deterministic signing so that its output is reproducible.
    _ALGORITHM: ClassVar[ec.ECDSA] = ec.ECDSA(hashes.SHA256())

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, *, request_body: bytes) -> None:
        _require_p256(private_key.curve)
        self._private = private_key
        self._request_sha256 = hashlib.sha256(request_body).digest()
        self._answer = hashlib.sha256()
        self._finished = False

    def __repr__(self) -> str:
        return f"AnswerSigner(request_sha256={self._request_sha256.hex()})"

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("an AnswerSigner holds a private key and is never serialised")

    @property
    def request_sha256(self) -> bytes:
        return self._request_sha256

    def update(self, data: bytes) -> None:
        """Account for body bytes emitted before the final record."""
        if self._finished:
            raise CryptoError("the answer is already signed", code="answer_signer_state")
        self._answer.update(data)

    def sign_record(self, record: bytes) -> bytes:
        """The final record with the signature member appended as its last member."""
        if self._finished:
            raise CryptoError("the answer is already signed", code="answer_signer_state")
        _check_record(record)
        self._answer.update(memoryview(record)[:-1])
        answer_sha256 = self._answer.digest()
        signature = self._private.sign(
            signed_message(self._request_sha256, answer_sha256), self._ALGORITHM
        )
        self._finished = True
        member = signature_member(
            request_sha256=self._request_sha256, answer_sha256=answer_sha256, signature=signature
        )
        return record[:-1] + member + b"}"


@dataclass(frozen=True, slots=True)
class SignedAnswer:
    """A verified answer. ``answer`` is exactly the signed bytes (the body up to the member)."""

    answer: bytes
    request_sha256: bytes
    answer_sha256: bytes
    signature: bytes


def verify_answer(body: bytes, *, request_body: bytes, signing_key: bytes) -> SignedAnswer:
    """Check the signature in an answer ``body`` (plaintext: for an encrypted exchange, what the
    response records open to) against the ``request_body`` sent and the binding's SPKI DER
    ``signing_key``. Fail-closed; typed errors only."""
    public_key = _load_public_key(signing_key)
    at = body.rfind(SIGNATURE_MARKER)
    if at < 0:
        raise CryptoError("the answer carries no signature", code="signature_missing")
    answer = body[:at]
    rest = body[at + len(SIGNATURE_MARKER) :]
    if len(rest) > _MAX_MEMBER_TAIL:
        raise CryptoError(
            "more than a signature member follows the signature marker",
            code="signature_trailing_data",
        )
    claimed_request, claimed_answer, signature, tail = _parse_member(rest)
    if not tail.startswith(b"}") or tail[1:] not in ALLOWED_TAILS:
        raise CryptoError(
            "the signature member is not the last member of the last record",
            code="signature_trailing_data",
        )
    request_sha256 = hashlib.sha256(request_body).digest()
    if not hmac.compare_digest(claimed_request, request_sha256):
        raise CryptoError(
            "the answer was signed for a different request", code="signature_request_mismatch"
        )
    answer_sha256 = hashlib.sha256(answer).digest()
    if not hmac.compare_digest(claimed_answer, answer_sha256):
        raise CryptoError("the answer differs from what was signed", code="signature_invalid")
    try:
        public_key.verify(
            signature, signed_message(request_sha256, answer_sha256), ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature as exc:
        raise CryptoError(
            "the answer signature does not verify with the attested key", code="signature_invalid"
        ) from exc
    return SignedAnswer(
        answer=answer,
        request_sha256=request_sha256,
        answer_sha256=answer_sha256,
        signature=signature,
    )


def _require_p256(curve: ec.EllipticCurve) -> None:
    if not isinstance(curve, ec.SECP256R1):
        raise ValueError(f"answer signing uses P-256, not {curve.name}")


def _check_record(record: bytes) -> None:
    # The member is spliced in before the record's closing brace, so the record must be one JSON
    # object with at least one member (else the spliced text would start with "{,").
    if not (record.startswith(b"{") and record.endswith(b"}")):
        raise ValueError("the final record must be a JSON object serialised without whitespace")
    try:
        parsed = json.loads(record)
    except ValueError as exc:
        raise ValueError("the final record is not JSON") from exc
    if not isinstance(parsed, dict) or not parsed:
        raise ValueError("the final record must be a non-empty JSON object")


def _load_public_key(signing_key: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = load_der_public_key(signing_key)
    except (ValueError, TypeError) as exc:
        raise CryptoError(
            "signing_key is not an SPKI DER public key", code="signing_key_invalid"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CryptoError("signing_key is not a P-256 key", code="signing_key_invalid")
    return key


def _parse_member(rest: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """``(request_sha256, answer_sha256, signature, tail)`` from the bytes after the marker.

    The member must be exactly what ``signature_member`` writes (these keys, in this order, no
    whitespace, canonical base64): it is the one part of the body the signature does not
    cover, so it is given no freedom to carry anything else. ``signature_malformed`` otherwise.
    """
    try:
        text = rest.decode("utf-8")
        value, end = json.JSONDecoder().raw_decode(text)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CryptoError(
            "the signature member is not a JSON object", code="signature_malformed"
        ) from exc
    if (
        not isinstance(value, dict)
        or set(value) != _MEMBER_KEYS
        or not all(isinstance(field, str) for field in value.values())
    ):
        raise CryptoError(
            "the signature member must hold exactly alg, request_sha256, answer_sha256, sig",
            code="signature_malformed",
        )
    if value["alg"] != SIGNATURE_ALG:
        raise CryptoError(f"unsupported signature alg {value['alg']!r}", code="signature_malformed")
    for name in ("request_sha256", "answer_sha256"):
        if not _HEX_SHA256.fullmatch(value[name]):
            raise CryptoError(f"{name} must be 64 lowercase hex", code="signature_malformed")
    try:
        signature = base64.b64decode(value["sig"], validate=True)
        decode_dss_signature(signature)
    except (binascii.Error, ValueError) as exc:
        raise CryptoError("sig is not a base64 DER signature", code="signature_malformed") from exc
    request_sha256 = bytes.fromhex(value["request_sha256"])
    answer_sha256 = bytes.fromhex(value["answer_sha256"])
    member = text[:end].encode("utf-8")
    canonical = signature_member(
        request_sha256=request_sha256, answer_sha256=answer_sha256, signature=signature
    )
    if SIGNATURE_MARKER + member != canonical:
        raise CryptoError(
            "the signature member is not in its canonical form", code="signature_malformed"
        )
    return request_sha256, answer_sha256, signature, rest[len(member) :]
