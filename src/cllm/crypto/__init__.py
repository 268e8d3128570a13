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

from cllm.crypto._chunks import (
    FINAL_FLAG,
    MAX_RECORD_SIZE,
    RECORD_HEADER_SIZE,
    RESPONSE_EXPORT_CONTEXT,
    RESPONSE_NONCE_SIZE,
    RESPONSE_SECRET_SIZE,
    TAG_SIZE,
    ResponseOpener,
    ResponseSealer,
    derive_response_key,
)
from cllm.crypto._hpke import (
    AEAD_ID,
    ENC_HEADER,
    ENCRYPTION_HEADER,
    ENCRYPTION_VALUE,
    HPKE_INFO,
    KDF_ID,
    KEM_ID,
    PUBLIC_KEY_SIZE,
    REQUEST_CONTENT_TYPE,
    RESPONSE_CONTENT_TYPE,
    HpkeKeyPair,
    SealedRequest,
    decode_enc_header,
    encode_enc_header,
    open_request,
    request_aad,
    seal_request,
)
from cllm.crypto._signing import (
    ALLOWED_TAILS,
    SIGNATURE_ALG,
    SIGNATURE_CONTEXT,
    SIGNATURE_MARKER,
    SIGNATURE_MEMBER,
    AnswerSigner,
    SignedAnswer,
    SigningKey,
    signature_member,
    signed_message,
    verify_answer,
)

__all__ = [
    "AEAD_ID",
    "ALLOWED_TAILS",
    "ENCRYPTION_HEADER",
    "ENCRYPTION_VALUE",
    "ENC_HEADER",
    "FINAL_FLAG",
    "HPKE_INFO",
    "KDF_ID",
    "KEM_ID",
    "MAX_RECORD_SIZE",
    "PUBLIC_KEY_SIZE",
    "RECORD_HEADER_SIZE",
    "REQUEST_CONTENT_TYPE",
    "RESPONSE_CONTENT_TYPE",
    "RESPONSE_EXPORT_CONTEXT",
    "RESPONSE_NONCE_SIZE",
    "RESPONSE_SECRET_SIZE",
    "SIGNATURE_ALG",
    "SIGNATURE_CONTEXT",
    "SIGNATURE_MARKER",
    "SIGNATURE_MEMBER",
    "TAG_SIZE",
    "AnswerSigner",
    "HpkeKeyPair",
    "ResponseOpener",
    "ResponseSealer",
    "SealedRequest",
    "SignedAnswer",
    "SigningKey",
    "decode_enc_header",
    "derive_response_key",
    "encode_enc_header",
    "open_request",
    "request_aad",
    "seal_request",
    "signature_member",
    "signed_message",
    "verify_answer",
]
