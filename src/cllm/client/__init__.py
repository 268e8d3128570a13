"""The cllm client: verify a server first, then talk end-to-end encrypted to its attested keys
and check every answer's signature.

- ``Client`` / ``AsyncClient``: ``verify()`` and ``chat.completions.create(...)``;
- ``openai_http_client(...)``: makes the official ``openai`` package do the same;
- ``LocalVerifier`` (the built-in verifier) or ``RemoteVerifier`` (a verifier service whose
  token is checked here).
"""

from cllm.client._channel import Answer, AnswerStream, PinnedKeys, apost, post, prepare
from cllm.client._client import AsyncClient, ChatCompletion, ChatCompletionChunk, Client, Usage
from cllm.client._gpus import GpuEntry, GpuError, GpuMeasurements, GpuStatus
from cllm.client._pin import check_verifier_url, jwks_thumbprints, parse_verifier_key
from cllm.client._transport import (
    AsyncAttestedTransport,
    AttestedSession,
    AttestedTransport,
    openai_async_http_client,
    openai_http_client,
)
from cllm.client._trust import (
    TrustConfig,
    TrustEntry,
    default_trust_path,
    normalise_server_url,
    trusted_verifier,
)
from cllm.client._verify import (
    LocalVerifier,
    RemoteVerifier,
    Status,
    Verification,
    Verifier,
    attest,
    verification_of,
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
    "GpuEntry",
    "GpuError",
    "GpuMeasurements",
    "GpuStatus",
    "LocalVerifier",
    "PinnedKeys",
    "RemoteVerifier",
    "Status",
    "TrustConfig",
    "TrustEntry",
    "Usage",
    "Verification",
    "Verifier",
    "apost",
    "attest",
    "check_verifier_url",
    "default_trust_path",
    "jwks_thumbprints",
    "normalise_server_url",
    "openai_async_http_client",
    "openai_http_client",
    "parse_verifier_key",
    "post",
    "prepare",
    "trusted_verifier",
    "verification_of",
]
