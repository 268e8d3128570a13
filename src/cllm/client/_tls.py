"""TLS that the evidence binds: when a server's binding names ``tls_spki_sha256``, TLS ends in
the TD, and every connection the client makes to it must present a certificate with exactly
that public key. A TLS-terminating middlebox (a load balancer, a corporate proxy whose CA the
machine trusts) presents its own key and is refused with ``tls_binding_mismatch``.

Connections are checked as soon as the handshake completes, before a request's headers (an API
key) are written, through httpcore's ``trace`` request extension; answers are checked again on
the connection they arrived on, which covers connections a pool kept from before a re-verification.
When the binding names no TLS key, TLS (if any) ends outside the TD and the verdict says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cllm.errors import X509_DECODE_ERRORS, AttestationError

__all__ = [
    "async_tls_trace",
    "check_response_tls",
    "peer_spki_sha256",
    "tls_finding",
    "tls_mismatch",
    "tls_trace",
]

_TLS_DONE = "connection.start_tls.complete"


def _spki_sha256(der: bytes) -> bytes | None:
    try:
        cert = x509.load_der_x509_certificate(der)
        spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except X509_DECODE_ERRORS:
        return None
    return hashlib.sha256(spki).digest()


def _stream_spki(stream: Any) -> bytes | None:
    """SHA-256 of the peer certificate's SPKI on a network stream; None for plain TCP (or a
    stream that cannot tell, such as a test double)."""
    get = getattr(stream, "get_extra_info", None)
    if get is None:
        return None
    ssl_object = get("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(True)  # positional: the low-level _SSLSocket takes no keywords
    return _spki_sha256(der) if der else None


def peer_spki_sha256(response: httpx.Response) -> bytes | None:
    """The SPKI hash of the certificate the connection that carried ``response`` presented."""
    return _stream_spki(response.extensions.get("network_stream"))


def tls_mismatch(expected: bytes, presented: bytes | None) -> AttestationError:
    seen = presented.hex() if presented is not None else "no TLS certificate"
    return AttestationError(
        f"the connection does not end in the attested TD: its evidence binds TLS key "
        f"sha256:{expected.hex()}, the connection presented {seen} (a TLS-terminating "
        "middlebox?)",
        code="tls_binding_mismatch",
    )


def _check(expected: bytes, stream: Any) -> None:
    presented = _stream_spki(stream)
    if presented != expected:
        raise tls_mismatch(expected, presented)


def tls_trace(expected: bytes) -> Callable[[str, Mapping[str, Any]], None]:
    """An httpcore ``trace`` callback that refuses a new TLS connection whose certificate is
    not the bound one, before anything is written to it."""

    def trace(event: str, info: Mapping[str, Any]) -> None:
        if event == _TLS_DONE:
            _check(expected, info.get("return_value"))

    return trace


def async_tls_trace(expected: bytes) -> Callable[[str, Mapping[str, Any]], Awaitable[None]]:
    """``tls_trace`` for ``httpx.AsyncClient``."""

    async def trace(event: str, info: Mapping[str, Any]) -> None:
        if event == _TLS_DONE:
            _check(expected, info.get("return_value"))

    return trace


def check_response_tls(response: httpx.Response, expected: bytes | None) -> None:
    """Raise ``tls_binding_mismatch`` when ``expected`` is bound and the connection that
    carried ``response`` did not present it (plain HTTP included)."""
    if expected is not None:
        _check(expected, response.extensions.get("network_stream"))


def tls_finding(bound: bytes | None, presented: bytes | None) -> dict[str, Any]:
    """What a verdict says about TLS: whether it ends inside the TD."""
    if bound is None:
        return {
            "ends_in_td": False,
            "bound_spki_sha256": None,
            "presented_spki_sha256": presented.hex() if presented else None,
            "note": "the evidence binds no TLS key: TLS, if any, ends outside the TD; "
            "prompts and answers are still sealed to the attested key, but headers (an API "
            "key) are visible to whoever terminates TLS",
        }
    return {
        "ends_in_td": presented == bound,
        "bound_spki_sha256": bound.hex(),
        "presented_spki_sha256": presented.hex() if presented else None,
        "note": "TLS ends in the TD: the connection presented the bound certificate key"
        if presented == bound
        else "the connection did not present the bound certificate key",
    }
