"""The client end of the answer channel: seal the request to the attested HPKE key, open the
answer as it streams, and check the answer's signature by the attested signing key.

Only keys taken from verified evidence belong here (``PinnedKeys``); this module does not
attest, it speaks to keys that were attested.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from cllm.crypto import (
    RESPONSE_CONTENT_TYPE,
    SIGNATURE_MARKER,
    ResponseOpener,
    SignedAnswer,
    request_aad,
    seal_request,
    verify_answer,
)
from cllm.errors import CryptoError
from cllm.evidence import Binding

__all__ = ["Answer", "AnswerStream", "PinnedKeys", "apost", "post", "prepare"]


@dataclass(frozen=True, slots=True)
class PinnedKeys:
    """The server keys a verified binding names."""

    signing_key: bytes  # SPKI DER
    hpke_key: bytes  # raw X25519
    # SHA-256 of the TLS certificate's SPKI when TLS ends in the TD: every connection to the
    # server must then present it (see _tls.py).
    tls_spki_sha256: bytes | None = None

    @classmethod
    def from_binding(cls, binding: Binding) -> PinnedKeys:
        return cls(
            signing_key=binding.signing_key,
            hpke_key=binding.hpke_key,
            tls_spki_sha256=binding.tls_spki_sha256,
        )


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int
    body: bytes  # plaintext body as the server produced it (signature member included)
    signed: SignedAnswer | None  # None for error answers, which are not signed

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(slots=True)
class AnswerStream:
    """Plaintext pieces of one answer as they arrive; ``finish()`` returns the answer with its
    signature checked. Sealed answers are opened record by record (reordering, dropping,
    replaying or truncating fails with ``CryptoError``), and since a record is always whole,
    the signature is checked as soon as the record carrying it is in: before that record
    reaches the caller, who may stop reading there (the ``openai`` client stops at
    ``[DONE]``)."""

    request_body: bytes
    keys: PinnedKeys
    opener: ResponseOpener | None
    status_code: int = 0
    _received: list[bytes] = field(default_factory=list)
    _signed: SignedAnswer | None = None

    def _verify(self) -> SignedAnswer:
        return verify_answer(
            b"".join(self._received),
            request_body=self.request_body,
            signing_key=self.keys.signing_key,
        )

    def feed(self, data: bytes) -> list[bytes]:
        if self.opener is None:  # plain bytes: a chunk may end inside the signature member
            self._received.append(data)
            return [data]
        pieces = self.opener.feed(data)
        for piece in pieces:
            self._received.append(piece)
            if self.status_code == 200 and SIGNATURE_MARKER in piece:
                self._signed = self._verify()
        return pieces

    def finish(self) -> Answer:
        """The whole answer; raises ``CryptoError`` when it is truncated or its signature is
        missing or wrong (only successful answers carry one)."""
        if self.opener is not None:
            self.opener.close()
        body = b"".join(self._received)
        if self.status_code != 200:
            return Answer(self.status_code, body, None)
        return Answer(self.status_code, body, self._signed or self._verify())


@dataclass(frozen=True, slots=True)
class _Prepared:
    body: bytes
    headers: dict[str, str]
    stream: AnswerStream


def prepare(doc: Mapping[str, Any], *, path: str, keys: PinnedKeys, encrypt: bool) -> _Prepared:
    """The request to send for ``doc`` (sealed when ``encrypt``), and its answer stream."""
    plain = json.dumps(doc).encode()
    if not encrypt:
        return _Prepared(
            plain, {"Content-Type": "application/json"}, AnswerStream(plain, keys, None)
        )
    sealed = seal_request(keys.hpke_key, plain, aad=request_aad("POST", path))
    return _Prepared(
        sealed.ciphertext, sealed.headers(), AnswerStream(plain, keys, sealed.opener())
    )


def _check_type(response: httpx.Response, *, encrypt: bool) -> None:
    # An encrypted request must get an encrypted answer: a plaintext reply means the server
    # (or something in between) did not use the attested key.
    kind = response.headers.get("content-type", "")
    if encrypt and not kind.startswith(RESPONSE_CONTENT_TYPE):
        raise CryptoError(
            f"expected a sealed answer, got {kind or 'no content type'} "
            f"(HTTP {response.status_code})",
            code="answer_not_sealed",
        )


def post(
    client: httpx.Client,
    path: str,
    doc: Mapping[str, Any],
    *,
    keys: PinnedKeys,
    encrypt: bool,
    headers: Mapping[str, str] | None = None,
    on_piece: Callable[[bytes], None] | None = None,
) -> Answer:
    """POST ``doc`` (sealed when ``encrypt``), hand each plaintext piece to ``on_piece`` as it
    arrives, and return the answer with its signature checked."""
    prepared = prepare(doc, path=path, keys=keys, encrypt=encrypt)
    with client.stream(
        "POST", path, content=prepared.body, headers={**prepared.headers, **(headers or {})}
    ) as response:
        _check_type(response, encrypt=encrypt)
        prepared.stream.status_code = response.status_code
        for data in response.iter_bytes():
            for piece in prepared.stream.feed(data):
                if on_piece is not None:
                    on_piece(piece)
    return prepared.stream.finish()


async def apost(
    client: httpx.AsyncClient,
    path: str,
    doc: Mapping[str, Any],
    *,
    keys: PinnedKeys,
    encrypt: bool,
    headers: Mapping[str, str] | None = None,
    on_piece: Callable[[bytes], None] | None = None,
) -> Answer:
    """``post`` for ``httpx.AsyncClient``."""
    prepared = prepare(doc, path=path, keys=keys, encrypt=encrypt)
    async with client.stream(
        "POST", path, content=prepared.body, headers={**prepared.headers, **(headers or {})}
    ) as response:
        _check_type(response, encrypt=encrypt)
        prepared.stream.status_code = response.status_code
        async for data in response.aiter_bytes():
            for piece in prepared.stream.feed(data):
                if on_piece is not None:
                    on_piece(piece)
    return prepared.stream.finish()
