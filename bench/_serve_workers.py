"""bench/serve.py's worker modes (``--worker direct|upstream``): llama-cpp-python called
directly, and an OpenAI-compatible upstream that streams as fast as it can."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

from _procs import HOST
from _serve_client import Trial
from _serve_procs import CHAT_PATH, UPSTREAM_MODEL, read_line, stop_process, worker_process

# worker: llama-cpp-python called directly


def direct_worker(model_path: str, threads: int) -> int:
    """Load the model, then answer one JSON line per request on stdin with the per-token
    times (seconds after the call) and the text."""
    import llama_cpp

    llama = llama_cpp.Llama(model_path=model_path, n_ctx=4096, n_threads=threads, verbose=False)
    print(json.dumps({"ready": True, "n_threads": threads}), flush=True)
    for line in sys.stdin:
        options = json.loads(line)
        times: list[float] = []
        texts: list[str] = []
        reason = None
        start = time.perf_counter()
        stream: Any = llama.create_chat_completion(stream=True, **options)
        for chunk in stream:
            choice = chunk["choices"][0]
            text = choice["delta"].get("content")
            if text:
                times.append(time.perf_counter() - start)
                texts.append(text)
            reason = choice["finish_reason"] or reason
        doc = {"times": times, "text": "".join(texts), "finish_reason": reason}
        print(json.dumps(doc), flush=True)
    return 0


class DirectEngine:
    def __init__(self, model_path: Path, threads: int) -> None:
        self.process = worker_process("direct", str(model_path), str(threads))
        self.ready = read_line(self.process, "direct")

    def trial(self, options: dict[str, Any]) -> Trial:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(options).encode() + b"\n")
        self.process.stdin.flush()
        doc = read_line(self.process, "direct")
        times = doc["times"]
        return Trial(times, doc["text"], doc["finish_reason"], tokens=len(times))

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stop_process(self.process)


# worker: an OpenAI-compatible upstream that streams as fast as it can


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _sse(doc: object) -> bytes:
    return b"data: " + json.dumps(doc, separators=(",", ":")).encode() + b"\n\n"


class _UpstreamProtocol(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: ``GET /v1/models`` and streaming
    ``POST /v1/chat/completions`` answering ``max_tokens`` chunks of one fixed word."""

    HEAD: Final = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )

    def __init__(self, batch: int) -> None:
        self._batch = batch
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy = False
        self._closed = False
        self._resume: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None  # the answer being streamed
        head = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": UPSTREAM_MODEL,
        }
        self._head = head
        token = _http_chunk(
            _sse(
                head
                | {"choices": [{"index": 0, "delta": {"content": " token"}, "finish_reason": None}]}
            )
        )
        self._token = token
        self._tokens = token * batch

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)

    def pause_writing(self) -> None:
        self._resume = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)
        self._resume = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._next()

    def _next(self) -> None:
        while not self._busy and not self._closed:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self._buffer) < end + 4 + length:
                return
            body = bytes(self._buffer[end + 4 : end + 4 + length])
            del self._buffer[: end + 4 + length]
            self._handle(method, path, body)

    def _respond(self, status: str, doc: object) -> None:
        assert self._transport is not None
        body = json.dumps(doc).encode()
        self._transport.write(
            f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )

    def _handle(self, method: str, path: str, body: bytes) -> None:
        if method == "GET" and path == "/v1/models":
            data = [{"id": UPSTREAM_MODEL, "object": "model", "created": 0, "owned_by": "bench"}]
            self._respond("200 OK", {"object": "list", "data": data})
        elif method == "POST" and path == CHAT_PATH:
            request = json.loads(body)
            tokens = int(request.get("max_tokens") or 16)
            usage = bool((request.get("stream_options") or {}).get("include_usage"))
            self._busy = True
            self._task = asyncio.get_running_loop().create_task(self._stream(tokens, usage))
        else:
            self._respond("404 Not Found", {"error": {"message": "not found"}})

    async def _stream(self, tokens: int, usage: bool) -> None:
        transport = self._transport
        assert transport is not None
        transport.write(self.HEAD)
        role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        transport.write(_http_chunk(_sse(self._head | {"choices": [role]})))
        full, rest = divmod(tokens, self._batch)
        for _ in range(full):
            if self._closed:
                return
            transport.write(self._tokens)
            if self._resume is not None:
                await self._resume
            else:
                await asyncio.sleep(0)  # let the other streams write too
        tail = [self._token * rest]
        finish = {"index": 0, "delta": {}, "finish_reason": "length"}
        tail.append(_http_chunk(_sse(self._head | {"choices": [finish]})))
        if usage:
            counts = {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": tokens + 10}
            tail.append(_http_chunk(_sse(self._head | {"choices": [], "usage": counts})))
        tail.append(_http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        if not self._closed:
            transport.write(b"".join(tail))
        self._busy = False
        self._next()


def upstream_worker(batch: int) -> int:
    """Serve on a free port, print it, run until stdin closes."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _UpstreamProtocol(batch), HOST, 0)
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()

    run_loop(main())
    return 0


def run_loop(main: Any) -> Any:
    """``uvloop.run`` when uvloop is installed (uvicorn[standard] brings it), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
