"""The sealed response stream: records under keys exported from the request's HPKE context.

Modelled on chunked Oblivious HTTP (draft-ietf-ohai-chunked-ohttp): the server exports a secret
from the HPKE context the request opened, mixes in a fresh ``response_nonce`` and the request's
``enc``, and derives one AES-128-GCM key and base nonce. Record ``i`` is sealed under nonce
``base_nonce XOR i``, so a record only opens at its own position: reordering, dropping or
replaying one breaks the record after it. The last record is sealed with associated data
``b"final"`` and flagged in its header, so a stream cut at a record boundary is told apart from
a complete one (a bare end of stream proves nothing: any proxy can close a connection).

Wire format (docs/protocol.md): ``response_nonce`` (16 bytes), then records, each a 4-byte
big-endian header (top bit FINAL, low 31 bits the ciphertext length) and that ciphertext.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from cllm.errors import CryptoError

__all__ = [
    "FINAL_FLAG",
    "MAX_RECORD_SIZE",
    "RECORD_HEADER_SIZE",
    "RESPONSE_EXPORT_CONTEXT",
    "RESPONSE_NONCE_SIZE",
    "RESPONSE_SECRET_SIZE",
    "TAG_SIZE",
    "ResponseOpener",
    "ResponseSealer",
    "derive_response_key",
]

RESPONSE_EXPORT_CONTEXT: Final = b"cllm/1 response"
RESPONSE_SECRET_SIZE: Final = 16  # Nk of AES-128-GCM
RESPONSE_NONCE_SIZE: Final = 16  # max(Nn, Nk), as in chunked OHTTP
KEY_SIZE: Final = 16
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
RECORD_HEADER_SIZE: Final = 4
FINAL_FLAG: Final = 0x8000_0000
_LENGTH_MASK: Final = 0x7FFF_FFFF
# A record's ciphertext is at most 16 MiB: the opener must hold a whole record before it can
# authenticate it, so without a cap a hostile length header could make it buffer up to 2 GiB.
# Streamed answers are a few bytes per record; whole non-streamed answers are far below this.
MAX_RECORD_SIZE: Final = 16 * 1024 * 1024
MAX_PLAINTEXT_SIZE: Final = MAX_RECORD_SIZE - TAG_SIZE
_FINAL_AAD: Final = b"final"
_HEADER: Final = struct.Struct(">I")


def derive_response_key(secret: bytes, *, enc: bytes, response_nonce: bytes) -> tuple[bytes, bytes]:
    """``(key, base_nonce)`` for the response stream, derived as in chunked OHTTP.

    ``salt = enc || response_nonce``; ``prk = HKDF-Extract(SHA-256, salt, secret)``;
    ``key = HKDF-Expand(prk, "key", 16)``; ``nonce = HKDF-Expand(prk, "nonce", 12)``.
    """
    # HKDF-Extract is HMAC(salt, ikm) by definition (RFC 5869 section 2.2); cryptography only
    # offers Extract fused with Expand, and both halves are needed separately here.
    prk = hmac.new(enc + response_nonce, secret, hashlib.sha256).digest()
    key = HKDFExpand(hashes.SHA256(), KEY_SIZE, b"key").derive(prk)
    nonce = HKDFExpand(hashes.SHA256(), NONCE_SIZE, b"nonce").derive(prk)
    return key, nonce


class ResponseSealer:
    """Seals one response stream (server side). Obtained from ``open_request``.

    Call ``start()`` once and send its bytes first, then ``seal()`` for each piece of the answer
    body and ``seal_final()`` exactly once at the end. Not thread-safe: one per response.
    """

    __slots__ = ("_aead", "_base_nonce", "_counter", "_finished", "_response_nonce", "_started")

    def __init__(self, secret: bytes, *, enc: bytes, response_nonce: bytes) -> None:
        if len(response_nonce) != RESPONSE_NONCE_SIZE:
            raise ValueError(f"response_nonce must be {RESPONSE_NONCE_SIZE} bytes")
        key, nonce = derive_response_key(secret, enc=enc, response_nonce=response_nonce)
        # Derived once: per record the sealer does one AES-GCM call, one XOR and one pack.
        self._aead = AESGCM(key)
        self._base_nonce = int.from_bytes(nonce, "big")
        self._response_nonce = response_nonce
        self._counter = 0
        self._started = False
        self._finished = False

    def __repr__(self) -> str:
        state = "finished" if self._finished else f"records={self._counter}"
        return f"ResponseSealer({state})"

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("a ResponseSealer holds a session key and is never serialised")

    @property
    def finished(self) -> bool:
        return self._finished

    def start(self) -> bytes:
        """The ``response_nonce``: the first 16 bytes of the response body."""
        if self._started:
            raise CryptoError("start() was already called", code="response_sealer_state")
        self._started = True
        return self._response_nonce

    def seal(self, data: bytes) -> bytes:
        """One framed non-final record carrying ``data`` (which may be empty)."""
        return self._seal(data, 0, None)

    def seal_final(self, data: bytes = b"") -> bytes:
        """The framed final record; nothing can be sealed after it."""
        record = self._seal(data, FINAL_FLAG, _FINAL_AAD)
        self._finished = True
        return record

    def seal_body(self, body: bytes) -> bytes:
        """A whole response in one go: ``start()``, then ``body`` in as few records as fit."""
        out = [self.start()]
        view = memoryview(body)
        while len(view) > MAX_PLAINTEXT_SIZE:
            out.append(self.seal(view[:MAX_PLAINTEXT_SIZE].tobytes()))
            view = view[MAX_PLAINTEXT_SIZE:]
        out.append(self.seal_final(view.tobytes()))
        return b"".join(out)

    def _seal(self, data: bytes, flag: int, aad: bytes | None) -> bytes:
        if not self._started or self._finished:
            raise CryptoError(
                "seal() needs start() first and nothing may follow the final record",
                code="response_sealer_state",
            )
        if len(data) > MAX_PLAINTEXT_SIZE:
            raise CryptoError(
                f"a record carries at most {MAX_PLAINTEXT_SIZE} bytes",
                code="response_record_too_large",
            )
        nonce = (self._base_nonce ^ self._counter).to_bytes(NONCE_SIZE, "big")
        self._counter += 1
        ciphertext = self._aead.encrypt(nonce, data, aad)
        return _HEADER.pack(len(ciphertext) | flag) + ciphertext


class ResponseOpener:
    """Opens one response stream incrementally (client side). Obtained from
    ``SealedRequest.opener()``.

    ``feed()`` takes the body in slices of any size and returns the plaintext of every record
    those bytes complete, as soon as it is complete; ``close()`` at end of stream raises unless
    the final record arrived. After any error the opener stays failed.
    """

    __slots__ = (
        "_aead",
        "_base_nonce",
        "_buffer",
        "_counter",
        "_done",
        "_enc",
        "_error",
        "_secret",
    )

    def __init__(self, secret: bytes, *, enc: bytes) -> None:
        self._secret = secret
        self._enc = enc
        self._aead: AESGCM | None = None  # known once the response_nonce has arrived
        self._base_nonce = 0
        self._buffer = bytearray()
        self._counter = 0
        self._done = False
        self._error: CryptoError | None = None

    def __repr__(self) -> str:
        state = "done" if self._done else f"records={self._counter}"
        return f"ResponseOpener({state})"

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("a ResponseOpener holds a session key and is never serialised")

    @property
    def done(self) -> bool:
        """True once the final record has been opened."""
        return self._done

    def feed(self, data: bytes) -> list[bytes]:
        """Plaintexts of the records completed by ``data``, in order."""
        if self._error is not None:
            raise self._error
        if self._done:
            if data:
                self._fail("bytes follow the final record", "response_trailing_data")
            return []
        self._buffer += data
        try:
            return self._drain()
        except CryptoError as exc:
            self._error = exc
            self._buffer.clear()
            raise

    def close(self) -> None:
        """End of stream: raises unless the final record was seen."""
        if self._error is not None:
            raise self._error
        if self._done:
            return
        if self._aead is None:
            self._fail("the response ends before its 16-byte nonce", "response_nonce_missing")
        self._fail("the response ends before its final record", "response_truncated")

    def _fail(self, message: str, code: str) -> None:
        self._error = CryptoError(message, code=code)
        raise self._error

    def _drain(self) -> list[bytes]:
        buffer = self._buffer
        pos = 0
        if self._aead is None:
            if len(buffer) < RESPONSE_NONCE_SIZE:
                return []
            key, nonce = derive_response_key(
                self._secret, enc=self._enc, response_nonce=bytes(buffer[:RESPONSE_NONCE_SIZE])
            )
            self._aead = AESGCM(key)
            self._base_nonce = int.from_bytes(nonce, "big")
            pos = RESPONSE_NONCE_SIZE
        out: list[bytes] = []
        while len(buffer) - pos >= RECORD_HEADER_SIZE:
            (header,) = _HEADER.unpack_from(buffer, pos)
            length = header & _LENGTH_MASK
            # Judged from the header alone, before buffering the body it announces.
            if length > MAX_RECORD_SIZE:
                raise CryptoError(
                    f"a record announces {length} bytes (at most {MAX_RECORD_SIZE})",
                    code="response_record_too_large",
                )
            if length < TAG_SIZE:
                raise CryptoError(
                    "a record is shorter than its authentication tag", code="response_chunk_invalid"
                )
            end = pos + RECORD_HEADER_SIZE + length
            if len(buffer) < end:
                break
            final = bool(header & FINAL_FLAG)
            nonce = (self._base_nonce ^ self._counter).to_bytes(NONCE_SIZE, "big")
            try:
                plaintext = self._aead.decrypt(
                    nonce,
                    bytes(buffer[pos + RECORD_HEADER_SIZE : end]),
                    _FINAL_AAD if final else None,
                )
            except InvalidTag as exc:
                raise CryptoError(
                    f"record {self._counter} does not open (tampered, reordered, dropped, "
                    "replayed, or its final flag changed)",
                    code="response_chunk_invalid",
                ) from exc
            self._counter += 1
            out.append(plaintext)
            pos = end
            if final:
                self._done = True
                if len(buffer) > pos:
                    raise CryptoError(
                        "bytes follow the final record", code="response_trailing_data"
                    )
                break
        del buffer[:pos]
        return out
