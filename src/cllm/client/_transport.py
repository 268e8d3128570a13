"""httpx transports that verify the server before the first request and then seal every POST
body to the attested HPKE key, open the sealed answer record by record, and check the answer's
signature before handing over its last record. The official ``openai`` package (or any httpx
user) gets all of that by passing ``http_client=openai_http_client(...)``.

A key change (the server restarted: its new key cannot open our request) makes the transport
verify the server again and retry once; it never falls back to plaintext. A verdict is used
until it expires (``Verification.expires_at``: the token's ``exp``); the first request after
that verifies again, with a fresh nonce, before anything is sent. When the evidence binds a TLS
key, every connection must present it (``tls_binding_mismatch``, see _tls.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Final

import httpx

from cllm.client._channel import AnswerStream, PinnedKeys
from cllm.client._tls import async_tls_trace, check_response_tls, tls_trace
from cllm.client._verify import Verification, Verifier, attest
from cllm.crypto import (
    RESPONSE_CONTENT_TYPE,
    SealedRequest,
    request_aad,
    seal_request,
)
from cllm.errors import AttestationError, CryptoError

__all__ = [
    "AsyncAttestedTransport",
    "AttestedSession",
    "AttestedTransport",
    "openai_async_http_client",
    "openai_http_client",
]

_log = logging.getLogger(__name__)

_DROPPED: Final = {"content-length", "content-type", "transfer-encoding"}
# A verdict from a custom ``Verifier`` that names no expiry is used this long (the default
# policy's max_token_age), never forever.
DEFAULT_VERDICT_LIFETIME: Final = 300


class AttestedSession:
    """The verification state one client shares across requests: the current verdict and
    the keys it pins. ``allow_warning`` says whether ``warning`` verdicts may be used.
    ``clock`` decides when a verdict has expired (``expires_at``) and must be renewed."""

    def __init__(
        self,
        base_url: str,
        verifier: Verifier,
        *,
        allow_warning: bool = True,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport
        )
        self._verifier = verifier
        self._allow_warning = allow_warning
        self._clock = clock
        self._lock = threading.Lock()
        self._verification: Verification | None = None
        self._stale = False
        self.attestations = 0  # how many verifications ran (status pages, tests)

    def _attest(self) -> Verification:
        # Under self._lock.
        self._verification = attest(self._http, self._verifier, clock=self._clock)
        self._stale = False
        self.attestations += 1
        return self._verification

    def expired(self, verification: Verification) -> bool:
        """Whether ``verification`` no longer vouches for its keys at this session's time."""
        deadline = verification.expires_at
        if deadline is None:
            deadline = verification.checked_at + DEFAULT_VERDICT_LIFETIME
        return self._clock() >= deadline

    def invalidate(self) -> None:
        """Verify again before the next request (a sealed request failed)."""
        with self._lock:
            self._stale = True

    def current(self) -> Verification:
        """The verdict in force, verifying first when there is none or it has expired."""
        with self._lock:
            current = self._verification
            if current is None or self._stale or self.expired(current):
                current = self._attest()
            return current

    @property
    def verification(self) -> Verification | None:
        return self._verification

    def verify(self) -> Verification:
        """Verify now (fresh nonce), whatever was verified before."""
        with self._lock:
            return self._attest()

    def keys(self, *, stale: PinnedKeys | None = None) -> PinnedKeys:
        """The pinned keys, verifying first when there are none (or they are ``stale``).
        Raises ``AttestationError`` when the server does not verify."""
        with self._lock:
            current = self._verification
            if (
                current is None
                or current.keys is None
                or current.keys == stale
                or self._stale
                or self.expired(current)
            ):
                current = self._attest()
                if stale is not None and current.keys == stale:
                    raise AttestationError(
                        "the server cannot open requests sealed to the key its evidence names",
                        code="server_key_unusable",
                        verification=current,
                    )
        permit = current.permits(allow_warning=self._allow_warning)
        if permit.code == "attestation_warning":
            raise AttestationError(permit.message, code=permit.code, verification=current)
        if not permit.permitted or current.keys is None:
            reasons = "; ".join(f"{r.code}: {r.message}" for r in current.reasons)
            raise AttestationError(
                f"the server did not verify ({reasons or current.status})",
                code=permit.code,
                verification=current,
            )
        return current.keys

    def close(self) -> None:
        self._http.close()


def _is_stream(body: bytes) -> bool:
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("stream") is True


def _pinned_extensions(
    extensions: Mapping[str, Any], keys: PinnedKeys, *, asynchronous: bool
) -> dict[str, Any]:
    """The request's extensions plus a TLS check of new connections when a key is bound."""
    if keys.tls_spki_sha256 is None:
        return dict(extensions)
    check: Any = (async_tls_trace if asynchronous else tls_trace)(keys.tls_spki_sha256)
    inner = extensions.get("trace")
    if inner is None:
        return {**extensions, "trace": check}
    if asynchronous:

        async def chained_async(event: str, info: Mapping[str, Any]) -> None:
            await check(event, info)
            await inner(event, info)

        return {**extensions, "trace": chained_async}

    def chained(event: str, info: Mapping[str, Any]) -> None:
        check(event, info)
        inner(event, info)

    return {**extensions, "trace": chained}


def _sealed_request(
    request: httpx.Request, keys: PinnedKeys, *, asynchronous: bool = False
) -> tuple[httpx.Request, SealedRequest]:
    sealed = seal_request(keys.hpke_key, request.content, aad=request_aad("POST", request.url.path))
    headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _DROPPED]
    headers.extend(sealed.headers().items())
    return httpx.Request(
        "POST",
        request.url,
        headers=headers,
        content=sealed.ciphertext,
        extensions=_pinned_extensions(request.extensions, keys, asynchronous=asynchronous),
    ), sealed


def _bound(response: httpx.Response, request: httpx.Request) -> httpx.Response:
    """``response`` tied to the request that was sent (inner transports need not set it); a
    body that was already read (a test double, a caching layer) is kept, not read twice."""
    try:
        content = response.content
    except httpx.ResponseNotRead:
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=response.stream,
            request=request,
            extensions=response.extensions,
        )
    return httpx.Response(
        response.status_code, headers=response.headers, content=content, request=request
    )


def _checked_tls(response: httpx.Response, keys: PinnedKeys) -> httpx.Response:
    """``response``, or ``tls_binding_mismatch`` (the response closed unread) when it came over
    a connection (perhaps pooled from before) that did not present the bound TLS key."""
    try:
        check_response_tls(response, keys.tls_spki_sha256)
    except AttestationError:
        response.close()
        raise
    return response


async def _achecked_tls(response: httpx.Response, keys: PinnedKeys) -> httpx.Response:
    try:
        check_response_tls(response, keys.tls_spki_sha256)
    except AttestationError:
        await response.aclose()
        raise
    return response


def _renewed(
    session: AttestedSession, stale: PinnedKeys, tls_error: AttestationError
) -> PinnedKeys:
    """Keys verified again after a TLS mismatch; the mismatch itself when the evidence still
    binds the same keys (the connection, not the server, changed)."""
    try:
        return session.keys(stale=stale)
    except AttestationError as again:
        if again.code == "server_key_unusable":
            raise tls_error from again
        raise


def _key_rejected(response: httpx.Response, body: bytes) -> bool:
    if response.status_code != 400:
        return False
    try:
        return bool(json.loads(body)["error"]["code"] == "hpke_open_failed")
    except (ValueError, KeyError, TypeError):
        return False


def _not_sealed(response: httpx.Response) -> CryptoError:
    kind = response.headers.get("content-type", "")
    return CryptoError(
        f"expected a sealed answer, got {kind or 'no content type'} (HTTP {response.status_code})",
        code="answer_not_sealed",
    )


def _opened_headers(response: httpx.Response, *, stream: bool) -> list[tuple[str, str]]:
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _DROPPED]
    headers.append(("content-type", "text/event-stream" if stream else "application/json"))
    return headers


class _OpenedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.Response, answer: AnswerStream) -> None:
        self._inner = inner
        self._answer = answer

    def __iter__(self) -> Iterator[bytes]:
        for data in self._inner.iter_bytes():
            yield from self._answer.feed(data)
        self._answer.finish()

    def close(self) -> None:
        self._inner.close()


class AttestedTransport(httpx.BaseTransport):
    def __init__(self, session: AttestedSession, inner: httpx.BaseTransport | None = None) -> None:
        self._session = session
        self._inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            # Nothing secret goes out, but not to an unverified server.
            keys = self._session.keys()
            request.extensions = _pinned_extensions(request.extensions, keys, asynchronous=False)
            response = self._inner.handle_request(request)
            _checked_tls(response, keys)
            return response
        body = request.read()
        keys = self._session.keys()
        for attempt in (1, 2):
            outgoing, sealed = _sealed_request(request, keys)
            try:
                sent = _checked_tls(self._inner.handle_request(outgoing), keys)
            except AttestationError as exc:
                if attempt == 2 or exc.code != "tls_binding_mismatch":
                    raise
                # A new certificate: a restarted server (whose new evidence binds it) or a
                # middlebox (whose connection fails verification itself). Verify again.
                keys = _renewed(self._session, keys, exc)
                continue
            response = _bound(sent, outgoing)
            if response.headers.get("content-type", "").startswith(RESPONSE_CONTENT_TYPE):
                answer = AnswerStream(body, keys, sealed.opener(), response.status_code)
                return httpx.Response(
                    response.status_code,
                    headers=_opened_headers(response, stream=_is_stream(body)),
                    stream=_OpenedStream(response, answer),
                    request=request,
                    extensions=response.extensions,
                )
            plain = response.read()
            response.close()
            if attempt == 1 and _key_rejected(response, plain):
                _log.warning("the server no longer holds the attested key: verifying it again")
                keys = self._session.keys(stale=keys)
                continue
            raise _not_sealed(response)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._inner.close()
        self._session.close()


class _AsyncOpenedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.Response, answer: AnswerStream) -> None:
        self._inner = inner
        self._answer = answer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for data in self._inner.aiter_bytes():
            for piece in self._answer.feed(data):
                yield piece
        self._answer.finish()

    async def aclose(self) -> None:
        await self._inner.aclose()


class AsyncAttestedTransport(httpx.AsyncBaseTransport):
    """``AttestedTransport`` for ``httpx.AsyncClient``. Verification itself is synchronous
    (it runs once per key) and runs in a worker thread."""

    def __init__(
        self, session: AttestedSession, inner: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._session = session
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def _keys(self, stale: PinnedKeys | None = None) -> PinnedKeys:
        import asyncio

        return await asyncio.to_thread(self._session.keys, stale=stale)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            keys = await self._keys()
            request.extensions = _pinned_extensions(request.extensions, keys, asynchronous=True)
            response = await self._inner.handle_async_request(request)
            await _achecked_tls(response, keys)
            return response
        body = await request.aread()
        keys = await self._keys()
        for attempt in (1, 2):
            outgoing, sealed = _sealed_request(request, keys, asynchronous=True)
            try:
                inner = await self._inner.handle_async_request(outgoing)
                sent = await _achecked_tls(inner, keys)
            except AttestationError as exc:
                if attempt == 2 or exc.code != "tls_binding_mismatch":
                    raise
                try:  # as in AttestedTransport
                    keys = await self._keys(stale=keys)
                except AttestationError as again:
                    if again.code == "server_key_unusable":
                        raise exc from again
                    raise
                continue
            response = _bound(sent, outgoing)
            if response.headers.get("content-type", "").startswith(RESPONSE_CONTENT_TYPE):
                answer = AnswerStream(body, keys, sealed.opener(), response.status_code)
                return httpx.Response(
                    response.status_code,
                    headers=_opened_headers(response, stream=_is_stream(body)),
                    stream=_AsyncOpenedStream(response, answer),
                    request=request,
                    extensions=response.extensions,
                )
            plain = await response.aread()
            await response.aclose()
            if attempt == 1 and _key_rejected(response, plain):
                _log.warning("the server no longer holds the attested key: verifying it again")
                keys = await self._keys(stale=keys)
                continue
            raise _not_sealed(response)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._inner.aclose()
        self._session.close()


def _session_base(base_url: str) -> str:
    # openai's base_url ends in /v1; the attestation route lives at the server's root.
    return base_url.rstrip("/").removesuffix("/v1")


def openai_http_client(
    base_url: str,
    *,
    verifier: Verifier,
    allow_warning: bool = True,
    timeout: float = 600.0,
    on_verified: Callable[[Verification], None] | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` for ``openai.OpenAI(base_url=..., http_client=...)``: the server at
    ``base_url`` is verified by ``verifier`` before the first request, every request body is
    sealed to its attested key, and every answer is opened and signature-checked."""
    session = AttestedSession(_session_base(base_url), verifier, allow_warning=allow_warning)
    if on_verified is not None:
        on_verified(session.verify())
    return httpx.Client(transport=AttestedTransport(session), timeout=timeout)


def openai_async_http_client(
    base_url: str,
    *,
    verifier: Verifier,
    allow_warning: bool = True,
    timeout: float = 600.0,
) -> httpx.AsyncClient:
    """``openai_http_client`` for ``openai.AsyncOpenAI``."""
    session = AttestedSession(_session_base(base_url), verifier, allow_warning=allow_warning)
    return httpx.AsyncClient(transport=AsyncAttestedTransport(session), timeout=timeout)
