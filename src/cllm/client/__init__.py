"""The cllm client: verify a server first, then talk end-to-end encrypted to its attested keys
and check every answer's signature.

- ``Client`` / ``AsyncClient``: ``verify()`` and ``chat.completions.create(...)``;
- ``openai_http_client(...)``: makes the official ``openai`` package do the same;
- ``LocalVerifier`` (the built-in verifier) or ``RemoteVerifier`` (a verifier service whose
  token is checked here).
"""

from cllm.client._channel import Answer, AnswerStream, PinnedKeys, apost, post, prepare
from cllm.client._client import AsyncClient, ChatCompletion, ChatCompletionChunk, Client, Usage
from cllm.client._transport import (
    AsyncAttestedTransport,
    AttestedSession,
    AttestedTransport,
    openai_async_http_client,
    openai_http_client,
)
from cllm.client._verify import (
    LocalVerifier,
    RemoteVerifier,
    Status,
    Verification,
    Verifier,
    attest,
)

__all__ = [
    "Answer",
    "AnswerStream",
    "AsyncAttestedTransport",
    "AsyncClient",
    "AttestedSession",
    "AttestedTransport",
    "ChatCompletion",
    "ChatCompletionChunk",
    "Client",
    "LocalVerifier",
    "PinnedKeys",
    "RemoteVerifier",
    "Status",
    "Usage",
    "Verification",
    "Verifier",
    "apost",
    "attest",
    "openai_async_http_client",
    "openai_http_client",
    "post",
    "prepare",
]
