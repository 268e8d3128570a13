"""End-to-end encryption and signed answers (docs/design.md §9; wire format in
docs/protocol.md).

* Requests are sealed with HPKE (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
  AES-128-GCM, base mode) to the attested ``hpke_key``, with the route as associated data.
* Responses are a stream of AES-128-GCM records under keys exported from the request's HPKE
  context, in the manner of chunked OHTTP; a flagged final record makes truncation detectable.
* Every answer carries an ECDSA P-256 signature by the attested ``signing_key`` over
  SHA-256(request body) and SHA-256(answer), as the last member of its last JSON record.

Server: ``HpkeKeyPair``, ``open_request`` -> ``ResponseSealer``; ``SigningKey`` ->
``AnswerSigner``. Client: ``seal_request`` -> ``SealedRequest`` -> ``ResponseOpener``;
``verify_answer``. Errors are ``CryptoError`` with the codes listed in docs/protocol.md.
"""

from cllm.crypto._chunks import ResponseOpener, ResponseSealer
from cllm.crypto._hpke import (
    ENC_HEADER,
    ENCRYPTION_HEADER,
    ENCRYPTION_VALUE,
    REQUEST_CONTENT_TYPE,
    RESPONSE_CONTENT_TYPE,
    HpkeKeyPair,
    SealedRequest,
    decode_enc_header,
    open_request,
    request_aad,
    seal_request,
)
from cllm.crypto._signing import (
    SIGNATURE_MARKER,
    AnswerSigner,
    SignedAnswer,
    SigningKey,
    verify_answer,
)

__all__ = [
    "ENCRYPTION_HEADER",
    "ENCRYPTION_VALUE",
    "ENC_HEADER",
    "REQUEST_CONTENT_TYPE",
    "RESPONSE_CONTENT_TYPE",
    "SIGNATURE_MARKER",
    "AnswerSigner",
    "HpkeKeyPair",
    "ResponseOpener",
    "ResponseSealer",
    "SealedRequest",
    "SignedAnswer",
    "SigningKey",
    "decode_enc_header",
    "open_request",
    "request_aad",
    "seal_request",
    "verify_answer",
]
