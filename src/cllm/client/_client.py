"""The SDK: ``Client`` and ``AsyncClient`` verify the server, pin its attested keys, and chat
over the sealed channel (``chat.completions.create``, streaming or not)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import httpx

from cllm.client._transport import AsyncAttestedTransport, AttestedSession, AttestedTransport
from cllm.client._verify import Verification, Verifier
from cllm.errors import ApiError

__all__ = ["AsyncClient", "ChatCompletion", "ChatCompletionChunk", "Client", "Usage"]

Message = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def parse(cls, doc: Mapping[str, Any] | None) -> Usage | None:
        if not doc:
            return None
        return cls(
            int(doc.get("prompt_tokens", 0)),
            int(doc.get("completion_tokens", 0)),
            int(doc.get("total_tokens", 0)),
        )


@dataclass(frozen=True, slots=True)
class ChatCompletion:
    id: str
    model: str
    content: str
    finish_reason: str | None
    usage: Usage | None


@dataclass(frozen=True, slots=True)
class ChatCompletionChunk:
    content: str  # "" for chunks that carry no text (role, finish, usage)
    finish_reason: str | None
    usage: Usage | None


def _body(
    messages: Sequence[Message], model: str, stream: bool, options: Mapping[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages]}
    body |= {key: value for key, value in options.items() if value is not None}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def _raise_for(response_status: int, content: bytes) -> None:
    try:
        error = json.loads(content)["error"]
        message, code = str(error.get("message", error)), str(error.get("code") or "api_error")
    except (ValueError, KeyError, TypeError, AttributeError):
        message, code = content[:300].decode("utf-8", "replace"), "api_error"
    raise ApiError(f"HTTP {response_status}: {message}", code=code, status_code=response_status)


def _completion(doc: Mapping[str, Any]) -> ChatCompletion:
    choice = doc["choices"][0]
    return ChatCompletion(
        id=str(doc["id"]),
        model=str(doc["model"]),
        content=str(choice["message"].get("content") or ""),
        finish_reason=choice.get("finish_reason"),
        usage=Usage.parse(doc.get("usage")),
    )


def _chunk(data: str) -> ChatCompletionChunk | None:
    if data == "[DONE]":
        return None
    doc = json.loads(data)
    if "error" in doc:
        error = doc["error"]
        raise ApiError(str(error.get("message")), code=str(error.get("code") or "api_error"))
    choices = doc.get("choices") or [{}]
    delta = choices[0].get("delta") or {}
    return ChatCompletionChunk(
        content=str(delta.get("content") or ""),
        finish_reason=choices[0].get("finish_reason"),
        usage=Usage.parse(doc.get("usage")),
    )


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class _Completions:
    def __init__(self, client: Client) -> None:
        self._client = client

    @overload
    def create(
        self,
        *,
        messages: Sequence[Message],
        model: str | None = ...,
        stream: Literal[False] = ...,
        **options: Any,
    ) -> ChatCompletion: ...

    @overload
    def create(
        self,
        *,
        messages: Sequence[Message],
        model: str | None = ...,
        stream: Literal[True],
        **options: Any,
    ) -> Iterator[ChatCompletionChunk]: ...

    def create(
        self,
        *,
        messages: Sequence[Message],
        model: str | None = None,
        stream: bool = False,
        **options: Any,
    ) -> ChatCompletion | Iterator[ChatCompletionChunk]:
        """OpenAI's ``chat.completions.create``: ``options`` are ``max_tokens``, ``temperature``,
        ``top_p``, ``seed``, ``stop``. The request is sealed to the attested key; the answer is
        opened and its signature checked (``CryptoError`` otherwise)."""
        body = _body(messages, model or self._client.model(), stream, options)
        if stream:
            return self._stream(body)
        response = self._client._http.post("/v1/chat/completions", json=body)
        if response.status_code != 200:
            _raise_for(response.status_code, response.content)
        return _completion(response.json())

    def _stream(self, body: Mapping[str, Any]) -> Iterator[ChatCompletionChunk]:
        with self._client._http.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                _raise_for(response.status_code, response.read())
            # Read to the end, past [DONE]: the sealed stream's final record comes after it.
            for line in response.iter_lines():
                if line.startswith("data: "):
                    chunk = _chunk(line[6:])
                    if chunk is not None:
                        yield chunk


class _Chat:
    def __init__(self, completions: Any) -> None:
        self.completions = completions


class Client:
    """A verified, end-to-end encrypted client for one ``cllm serve``.

    >>> from cllm.client import Client, LocalVerifier
    >>> with Client("http://127.0.0.1:8080", verifier=LocalVerifier()) as client:  # doctest: +SKIP
    ...     print(client.verify().status)
    ...     reply = client.chat.completions.create(messages=[{"role": "user", "content": "Hi"}])
    ...     print(reply.content)

    Nothing is sent before the server verifies (``AttestationError`` otherwise); ``warning``
    verdicts are accepted unless ``allow_warning=False``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        verifier: Verifier,
        allow_warning: bool = True,
        api_key: str | None = None,
        timeout: float = 600.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # ``transport``: what carries the bytes (a proxy, custom TLS); the checks stay on top.
        self._session = AttestedSession(
            base_url, verifier, allow_warning=allow_warning, transport=transport
        )
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            transport=AttestedTransport(self._session, transport),
            headers=_headers(api_key),
            timeout=timeout,
        )
        self._model: str | None = None
        self.chat = _Chat(_Completions(self))

    def verify(self) -> Verification:
        """Verify the server now with a fresh nonce and pin the keys it names."""
        return self._session.verify()

    @property
    def verification(self) -> Verification | None:
        return self._session.verification

    def models(self) -> list[str]:
        response = self._http.get("/v1/models")
        if response.status_code != 200:
            _raise_for(response.status_code, response.content)
        return [str(model["id"]) for model in response.json()["data"]]

    def model(self) -> str:
        if self._model is None:
            self._model = self.models()[0]
        return self._model

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _AsyncCompletions:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        messages: Sequence[Message],
        model: str | None = None,
        **options: Any,
    ) -> ChatCompletion:
        body = _body(messages, model or await self._client.model(), False, options)
        response = await self._client._http.post("/v1/chat/completions", json=body)
        if response.status_code != 200:
            _raise_for(response.status_code, response.content)
        return _completion(response.json())

    async def stream(
        self,
        *,
        messages: Sequence[Message],
        model: str | None = None,
        **options: Any,
    ) -> AsyncIterator[ChatCompletionChunk]:
        """The streaming form (an async generator cannot share ``create``'s signature)."""
        body = _body(messages, model or await self._client.model(), True, options)
        async with self._client._http.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                _raise_for(response.status_code, await response.aread())
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    chunk = _chunk(line[6:])
                    if chunk is not None:
                        yield chunk


class AsyncClient:
    """``Client`` for asyncio: ``await client.chat.completions.create(...)``, and
    ``async for chunk in client.chat.completions.stream(...)``."""

    def __init__(
        self,
        base_url: str,
        *,
        verifier: Verifier,
        allow_warning: bool = True,
        api_key: str | None = None,
        timeout: float = 600.0,
    ) -> None:
        self._session = AttestedSession(base_url, verifier, allow_warning=allow_warning)
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            transport=AsyncAttestedTransport(self._session),
            headers=_headers(api_key),
            timeout=timeout,
        )
        self._model: str | None = None
        self.chat = _Chat(_AsyncCompletions(self))

    async def verify(self) -> Verification:
        import asyncio

        return await asyncio.to_thread(self._session.verify)

    @property
    def verification(self) -> Verification | None:
        return self._session.verification

    async def models(self) -> list[str]:
        response = await self._http.get("/v1/models")
        if response.status_code != 200:
            _raise_for(response.status_code, response.content)
        return [str(model["id"]) for model in response.json()["data"]]

    async def model(self) -> str:
        if self._model is None:
            self._model = (await self.models())[0]
        return self._model

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
