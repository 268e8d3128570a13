"""The answer channel: how a request body comes in and an answer goes out.

In: the body is read up to a limit; when the client sealed it to the attested HPKE key it is
opened here, and the answer is then sealed chunk by chunk to the same context.
Out: routes yield body parts and, last, the final JSON record; the channel signs the answer with
the attested signing key (the signature rides in that final record, see docs/protocol.md) and
seals it when the request was sealed. Routes never see ciphertext or keys.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from cllm.crypto import (
    ENC_HEADER,
    ENCRYPTION_HEADER,
    ENCRYPTION_VALUE,
    RESPONSE_CONTENT_TYPE,
    ResponseSealer,
    decode_enc_header,
    open_request,
    request_aad,
)
from cllm.errors import CryptoError, ServerError
from cllm.server._keys import ServerKeys

__all__ = [
    "NDJSON_MEDIA_TYPE",
    "SSE_MEDIA_TYPE",
    "Channel",
    "FinalRecord",
    "Part",
    "json_bytes",
    "open_channel",
    "sse",
]

SSE_MEDIA_TYPE: Final = "text/event-stream"
NDJSON_MEDIA_TYPE: Final = "application/x-ndjson"


@dataclass(frozen=True, slots=True)
class FinalRecord:
    """The answer's last JSON record (``record`` is one JSON object), framed by ``prefix`` and
    ``suffix`` (``data: `` / ``\\n\\ndata: [DONE]\\n\\n`` for SSE, ``""`` / ``\\n`` for
    NDJSON). The signature is appended to the record as its last member."""

    record: bytes
    prefix: bytes = b""
    suffix: bytes = b""


Part = bytes | FinalRecord


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ServerError(f"request body over {limit} bytes", code="body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServerError(f"request body over {limit} bytes", code="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(slots=True)
class Channel:
    """One request's channel: its plaintext body and, when sealed, the response sealer."""

    body: bytes
    sealer: ResponseSealer | None
    keys: ServerKeys

    @property
    def encrypted(self) -> bool:
        return self.sealer is not None

    async def _emit(self, parts: AsyncIterator[Part]) -> AsyncIterator[bytes]:
        signer = self.keys.signing.signer(request_body=self.body)
        sealer = self.sealer
        if sealer is not None:
            yield sealer.start()
        try:
            async for part in parts:
                if isinstance(part, FinalRecord):
                    signer.update(part.prefix)
                    data = part.prefix + signer.sign_record(part.record) + part.suffix
                else:
                    signer.update(part)
                    data = part
                yield sealer.seal(data) if sealer is not None else data
        finally:
            close = getattr(parts, "aclose", None)
            if close is not None:
                await close()
        if sealer is not None:
            yield sealer.seal_final()

    def stream(self, parts: AsyncIterator[Part], *, media_type: str) -> StreamingResponse:
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            self._emit(parts),
            media_type=RESPONSE_CONTENT_TYPE if self.encrypted else media_type,
            headers=headers,
        )

    def whole(self, record: bytes, *, status_code: int = 200) -> Response:
        """A non-streamed answer: one JSON record, signed (and sealed when asked)."""
        body = self.keys.signing.signer(request_body=self.body).sign_record(record)
        return self.plain(body, status_code=status_code, media_type="application/json")

    def plain(self, body: bytes, *, status_code: int, media_type: str) -> Response:
        """An unsigned body (errors), sealed when the request was."""
        if self.sealer is not None:
            body = self.sealer.start() + self.sealer.seal_final(body)
            media_type = RESPONSE_CONTENT_TYPE
        return Response(
            body,
            status_code=status_code,
            media_type=media_type,
            headers={"Cache-Control": "no-store"},
        )


async def open_channel(request: Request, *, keys: ServerKeys, limit: int) -> Channel:
    """Read the body; open it when it is sealed (``X-Cllm-Encryption: hpke-v1``)."""
    raw = await _read_body(request, limit)
    mode = request.headers.get(ENCRYPTION_HEADER)
    if mode is None:
        return Channel(raw, None, keys)
    if mode != ENCRYPTION_VALUE:
        raise CryptoError(f"unknown encryption {mode!r}", code="encryption_unsupported")
    enc = decode_enc_header(request.headers.get(ENC_HEADER, ""))
    aad = request_aad(request.method, request.url.path)
    body, sealer = open_request(keys.hpke, enc=enc, ciphertext=raw, aad=aad)
    return Channel(body, sealer, keys)


def json_bytes(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def sse(doc: object) -> bytes:
    return b"data: " + json_bytes(doc) + b"\n\n"
