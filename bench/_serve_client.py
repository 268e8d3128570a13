"""bench/serve.py's minimal HTTP/1.1 streaming client (raw sockets, chunked, SSE)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from _procs import HOST


class RawConnection:
    """One keep-alive HTTP/1.1 connection; the response body is de-chunked as it arrives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    @staticmethod
    def encode(path: str, body: bytes) -> bytes:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def stream(self, request: bytes) -> AsyncIterator[tuple[int, bytes]]:
        """Send ``request``; yield (status, body bytes) as they arrive, one socket read at a
        time (chunked transfer coding removed)."""
        self._writer.write(request)
        reader = self._reader
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(maxsplit=2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ConnectionError(f"bad status line {lines[0][:80]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            if length is None:
                raise ConnectionError("response with neither Content-Length nor chunks")
            yield status, await reader.readexactly(length)
            return
        chunks = Dechunker()
        while not chunks.done:
            data = await reader.read(1 << 16)
            if not data:
                raise asyncio.IncompleteReadError(b"", None)
            body = chunks.feed(data)
            if body:
                yield status, body

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


class Dechunker:
    """HTTP/1.1 chunked transfer coding, undone incrementally (no trailers expected)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._left = 0  # bytes of the current chunk still to come, its CRLF included
        self.done = False

    def feed(self, data: bytes) -> bytes:
        buffer = self._buffer + data
        out: list[bytes] = []
        while not self.done:
            if self._left == 0:
                end = buffer.find(b"\r\n")
                if end < 0:
                    break
                size = int(buffer[:end].split(b";", 1)[0], 16)
                if size == 0:
                    if len(buffer) < end + 4:
                        break
                    self.done = True
                    buffer = buffer[end + 4 :]
                    break
                buffer = buffer[end + 2 :]
                self._left = size + 2
            if len(buffer) >= self._left:
                out.append(buffer[: self._left - 2])
                buffer = buffer[self._left :]
                self._left = 0
            else:
                if len(buffer) > 2:
                    take = min(len(buffer), self._left - 2)
                    out.append(buffer[:take])
                    buffer = buffer[take:]
                    self._left -= take
                break
        self._buffer = buffer
        return b"".join(out)


class SseTokens:
    """Content-carrying ``data:`` events of an OpenAI chat stream, timed by the arrival of the
    bytes that complete them. ``feed`` only keeps the bytes and their time (the client should
    cost the machine as little as possible while it measures); ``parse`` decodes afterwards."""

    def __init__(self) -> None:
        self._pieces: list[tuple[float, bytes]] = []
        self.times: list[float] = []
        self.texts: list[str] = []
        self.finish_reason: str | None = None
        self.done = False
        self.signed = False
        self.completion_tokens: int | None = None  # from the usage record
        self.errors: list[str] = []

    def feed(self, data: bytes, now: float) -> None:
        self._pieces.append((now, data))

    def parse(self) -> None:
        buffer = b""
        for now, data in self._pieces:
            buffer += data
            *events, buffer = buffer.split(b"\n\n")
            self._events(events, now)

    def _events(self, events: list[bytes], now: float) -> None:
        for event in events:
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    self.done = True
                    continue
                doc = json.loads(payload)
                if "error" in doc:
                    self.errors.append(str(doc["error"]))
                if "cllm_signature" in doc:
                    self.signed = True
                if isinstance(doc.get("usage"), dict):
                    self.completion_tokens = doc["usage"].get("completion_tokens")
                for choice in doc.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        self.times.append(now)
                        self.texts.append(text)
                    if choice.get("finish_reason"):
                        self.finish_reason = choice["finish_reason"]


@dataclass
class Trial:
    times: list[float]  # seconds after the request started, one per content chunk or event
    text: str
    finish_reason: str | None
    # Direct: one chunk per token. Served: the usage record's count (an event may carry more
    # than one token when they follow each other within cllm serve's --stream-interval-ms).
    tokens: int

    @property
    def tok_s(self) -> float:
        return self.tokens / self.times[-1] if self.times else 0.0

    @property
    def ttft_ms(self) -> float:
        return self.times[0] * 1000 if self.times else float("inf")
