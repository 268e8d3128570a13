"""Benchmark: the inference server ``cllm serve`` against calling its engine directly, and its
capacity as a gateway in front of an OpenAI-compatible upstream.

Three measurements in one run, everything on 127.0.0.1:

1. **Embedded engine** (llama-cpp, the packaged SmolLM2-135M-Instruct GGUF unless ``--model``).
   *Direct*: a worker process of this script loads ``llama_cpp.Llama(model_path, n_ctx=4096,
   n_threads=os.cpu_count(), verbose=False)`` and calls ``create_chat_completion(...,
   stream=True)``, timing every streamed content chunk. *Served*: ``cllm serve --tee simulated``
   in its own process with the same model, threads and context (and its default
   ``--stream-interval-ms`` unless one is given), and the lightest client there
   is in this process (a blocking socket, one timed ``recv`` per wake-up, events decoded after
   the answer) timing every SSE event that carries content. Same prompt, same sampling
   (temperature 0, fixed seed) and ``max_tokens``; the script checks that every side generates
   ``max_tokens`` tokens and the same text. tokens/s = tokens (direct: content chunks, one per
   token; served: the usage record's count, as an event may carry several tokens) / (time of
   the last content chunk or event - request start); TTFT = time of the first one - request
   start. Trials interleave (direct,
   served, sealed, and plain through the project's client; the order rotates every repetition)
   so machine noise hits all sides alike; one untimed warm-up each first; medians are reported.
   A repetition during which other processes kept more than ``--quiet`` CPUs busy (from
   /proc/stat, minus this benchmark's processes) is left out and repeated.
2. **Sealed** (HPKE): the served measurement again, with keys taken from
   ``GET /v1/attestation/report?nonce=`` (``parse_evidence`` + ``check_evidence``), the request
   sealed and the answer opened record by record by the project's own client
   (``cllm.client.post(..., encrypt=True)`` on ``httpx.Client``), its signature checked. The
   same client with ``encrypt=False`` is a fourth side, to tell the cost of the client stack
   from that of the encryption.
3. **Gateway**: a bench-only upstream (a raw asyncio HTTP/1.1 server in a worker process of this
   script) streams ``data: {chat.completion.chunk}`` events as fast as it can, each event its own
   HTTP chunk, several per socket write; ``cllm serve --engine openai`` proxies it; ``--streams``
   (64) concurrent streaming requests of ``--stream-tokens`` (2000) tokens each go through it for
   ``--rounds`` rounds, from a raw asyncio client in this process that counts content events and
   checks each answer's usage and ``[DONE]``. Throughput = all content events / round wall time;
   CPU seconds per token of the three processes come from /proc and ``time.process_time``.

Usage: ``python bench/serve.py [--json] [--repeat N] [--max-tokens N] [--model PATH.gguf]
[--threads N] [--streams N] [--stream-tokens N] [--rounds N] [--upstream-batch N]
[--quiet CPUS] [--only llama|gateway] [--stream-interval-ms MS]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from _procs import HOST, bytecode_env, cllm_command, free_port, process_cpu

CHAT_PATH: Final = "/v1/chat/completions"
START_TIMEOUT: Final = 120.0  # seconds for a server to answer /healthz (model load included)
REQUEST_TIMEOUT: Final = 300.0
SEED: Final = 1234
PROMPT: Final = (
    "Write a long, detailed essay about the history of the Roman Empire, from the founding of "
    "the city to the fall of Constantinople. Cover every century in depth, with names, dates, "
    "battles, emperors, laws, trade and daily life. Do not stop early."
)
UPSTREAM_MODEL: Final = "bench-upstream"
GOAL_RATIO: Final = 0.97
GOAL_TTFT_OVERHEAD_MS: Final = 15.0
GOAL_HPKE_RATIO: Final = 0.95
GOAL_GATEWAY_TOK_S: Final = 10_000.0

_log = logging.getLogger("bench.serve")


# --------------------------------------------------------------------------------------------
# processes


def thread_cpu(pid: int, tid: int | None = None) -> float:
    """CPU seconds of one thread (default: the main thread, whose id is the process id), from
    the scheduler's nanosecond run time (``schedstat``) rather than clock ticks."""
    try:
        return int(Path(f"/proc/{pid}/task/{tid or pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def machine_busy() -> float:
    """CPU seconds all CPUs spent busy since boot, time stolen by the hypervisor included."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class ForeignLoad:
    """How many CPUs processes other than ``pids`` kept busy (plus hypervisor steal) from
    construction until ``cores()``: the benchmark's own noise detector."""

    def __init__(self, pids: Sequence[int]) -> None:
        self._pids = pids
        self._start = time.perf_counter()
        self._busy = machine_busy()
        self._ours = sum(process_cpu(pid) for pid in pids)

    def cores(self) -> float:
        wall = time.perf_counter() - self._start
        ours = sum(process_cpu(pid) for pid in self._pids) - self._ours
        foreign = machine_busy() - self._busy - ours
        return max(foreign, 0.0) / wall if wall > 0 else 0.0


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class ServeProcess:
    """``cllm serve --tee simulated --state-dir <tmp> --port <free> *args`` in a subprocess."""

    def __init__(self, tmp: Path, name: str, args: Sequence[str]) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = tmp / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                *cllm_command(),
                "serve",
                "--tee",
                "simulated",
                "--state-dir",
                str(tmp / f"{name}-state"),
                "--host",
                HOST,
                "--port",
                str(self.port),
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200", **bytecode_env(tmp / f"{name}-pycache")},
        )

    def wait_ready(self) -> dict[str, Any]:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    self.fail(f"cllm serve exited with code {self.process.returncode}")
                try:
                    response = client.get(f"{self.url}/healthz")
                    if response.status_code == 200:
                        health: dict[str, Any] = response.json()
                        return health
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        self.fail(f"cllm serve did not answer /healthz within {START_TIMEOUT:.0f} s")
        raise AssertionError  # unreachable

    def fail(self, message: str) -> None:
        self.stop()
        log = self.log_path.read_text(errors="replace")
        raise SystemExit(f"{message}\n--- server output ---\n{log[-4000:]}")

    def cpu(self) -> float:
        return process_cpu(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


def worker_process(mode: str, *extra: str) -> subprocess.Popen[bytes]:
    """This script in worker mode (``--worker MODE``), talking JSON lines on stdin / stdout."""
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--worker", mode, *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def read_line(process: subprocess.Popen[bytes], what: str) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"the {what} worker exited (code {process.wait()})")
    doc: dict[str, Any] = json.loads(line)
    if "error" in doc:
        raise SystemExit(f"the {what} worker failed: {doc['error']}")
    return doc


# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# a minimal HTTP/1.1 streaming client


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


# --------------------------------------------------------------------------------------------
# the embedded engine: direct against served against sealed


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


def sse_trial(sse: SseTokens, start: float) -> Trial:
    sse.parse()
    if sse.errors:
        raise SystemExit(f"the server answered with an error event: {sse.errors[0]}")
    if not sse.done:
        raise SystemExit("the stream ended without data: [DONE]")
    if sse.completion_tokens is None:
        raise SystemExit("the stream carries no usage record")
    times = [t - start for t in sse.times]
    return Trial(times, "".join(sse.texts), sse.finish_reason, sse.completion_tokens)


def blocking_stream(port: int, request: bytes) -> tuple[int, float, list[tuple[float, bytes]]]:
    """The lightest client there is, for the one-stream measurements: a blocking socket (no
    event loop), one ``recv`` per wake-up, each timed; de-chunked as it goes. Returns the
    status, the start time and the (arrival time, body bytes) pieces."""
    with socket.create_connection((HOST, port)) as sock:  # before the clock starts
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(REQUEST_TIMEOUT)
        clock = time.perf_counter
        recv = sock.recv
        start = clock()
        sock.sendall(request)
        raw: list[tuple[float, bytes]] = []
        head = b""
        while b"\r\n\r\n" not in head:
            data = recv(1 << 16)
            if not data:
                raise ConnectionError("the server closed the connection")
            head += data
        now = clock()
        head, _, rest = head.partition(b"\r\n\r\n")
        status = int(head.split(maxsplit=2)[1])
        if b"transfer-encoding: chunked" not in head.lower():
            return status, start, [(now, rest)]  # an error answer with a Content-Length
        chunks = Dechunker()
        raw.append((now, rest))
        body = chunks.feed(rest)
        while not chunks.done:
            data = recv(1 << 16)
            if not data:
                raise ConnectionError("the server closed the connection mid-answer")
            raw.append((clock(), data))
            chunks.feed(data)  # only to see the end; decoded again below, after the clock
        pieces = [(raw[0][0], body)]
        chunks = Dechunker()
        chunks.feed(raw[0][1])
        pieces += [(when, chunks.feed(data)) for when, data in raw[1:]]
        return status, start, pieces


def served_trial(port: int, body: bytes, keys: Any) -> Trial:
    """One plain streamed answer on a fresh connection (opened before the clock starts: the
    server closes idle ones after 5 s); its signature is checked after the stream (not timed)."""
    from cllm.crypto import verify_answer

    status, start, pieces = blocking_stream(port, RawConnection.encode(CHAT_PATH, body))
    if status != 200:
        raise SystemExit(f"POST {CHAT_PATH}: HTTP {status}: {pieces[0][1][:300]!r}")
    sse = SseTokens()
    for when, data in pieces:
        sse.feed(data, when)
    trial = sse_trial(sse, start)
    if not sse.signed:
        raise SystemExit("the served answer carries no signature")
    received = b"".join(data for _, data in pieces)
    verify_answer(received, request_body=body, signing_key=keys.signing_key)
    return trial


def client_trial(client: Any, doc: dict[str, Any], keys: Any, *, encrypt: bool) -> Trial:
    """One answer through the project's client (``cllm.client.post`` on ``httpx.Client``):
    sealed to the attested HPKE key and opened record by record when ``encrypt``; signature
    checked. (The synchronous client: on this machine it needs about a third less CPU per
    token than ``apost`` on ``httpx.AsyncClient``, CPU the engine would otherwise lose.)"""
    from cllm.client import post

    sse = SseTokens()
    clock = time.perf_counter

    def on_piece(piece: bytes) -> None:
        sse.feed(piece, clock())

    start = clock()
    answer = post(client, CHAT_PATH, doc, keys=keys, encrypt=encrypt, on_piece=on_piece)
    if answer.status_code != 200 or answer.signed is None:
        raise SystemExit(f"POST {CHAT_PATH} (encrypt={encrypt}): HTTP {answer.status_code}")
    return sse_trial(sse, start)


def attested_keys(client: Any) -> Any:
    """The server's keys from fresh evidence for our nonce, checked (binding, nonce, RTMR3)."""
    from cllm.client import PinnedKeys
    from cllm.evidence import check_evidence, parse_evidence

    nonce = secrets.token_bytes(32)
    response = client.get("/v1/attestation/report", params={"nonce": nonce.hex()})
    if response.status_code != 200:
        raise SystemExit(f"GET /v1/attestation/report: HTTP {response.status_code}")
    evidence = parse_evidence(response.content)
    check = check_evidence(evidence, expected_nonce=nonce)
    if not check.ok:
        raise SystemExit(f"the server's evidence does not check: {check.error}")
    return PinnedKeys.from_binding(evidence.binding)


# The sides of the embedded-engine comparison, in their first order.
KINDS: Final = ("direct", "served", "hpke", "httpx")
KIND_LABELS: Final = {
    "direct": "direct llama-cpp-python",
    "served": "served, raw client",
    "hpke": "served HPKE, cllm.client",
    "httpx": "served plain, cllm.client",
}


@dataclass
class LlamaResult:
    trials: dict[str, list[Trial]] = field(default_factory=lambda: {k: [] for k in KINDS})
    order: list[str] = field(default_factory=list)
    # CPU seconds per kind of trial, summed over its timed trials: "engine" = the process that
    # runs llama.cpp (direct worker or server), "loop" = the server's main thread (its event
    # loop; llama.cpp runs on other threads), "client" = this process.
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    n_threads: int = 0
    model_id: str = ""
    foreign_cores: list[float] = field(default_factory=list)  # per repetition attempted
    disturbed: int = 0  # repetitions left out because other processes used the CPUs
    quiet: bool = True  # False: no repetition was quiet, the disturbed ones are reported


def keep(
    result: LlamaResult,
    order: list[str],
    trials: dict[str, Trial],
    cpu: dict[str, tuple[float, ...]],
) -> None:
    """Count one repetition: its trials and the CPU (client, engine, loop) they took."""
    for kind, trial in trials.items():
        result.trials[kind].append(trial)
        spent = result.cpu.setdefault(kind, {"engine": 0.0, "loop": 0.0, "client": 0.0})
        spent["client"] += cpu[kind][0]
        spent["engine"] += cpu[kind][1]
        spent["loop"] += cpu[kind][2]
    result.order.append(",".join(order))


def run_llama(args: argparse.Namespace, tmp: Path, model_path: Path, console: Any) -> LlamaResult:
    import httpx

    result = LlamaResult()
    options = ["--model", str(model_path)] if args.model else []
    if args.threads is not None:  # else both sides use os.cpu_count(), cllm serve's default
        options += ["--threads", str(args.threads)]
    if args.stream_interval_ms is not None:  # else cllm serve's default
        options += ["--stream-interval-ms", str(args.stream_interval_ms)]
    server = ServeProcess(tmp, "serve-llama", options)
    direct: DirectEngine | None = None
    try:
        direct = DirectEngine(model_path, args.threads or os.cpu_count() or 1)
        result.n_threads = int(direct.ready["n_threads"])
        health = server.wait_ready()
        model_id = str(health["model"])
        result.model_id = model_id
        messages = [{"role": "user", "content": PROMPT}]
        sampling = {"max_tokens": args.max_tokens, "temperature": 0.0, "seed": SEED}
        direct_options = {"messages": messages, **sampling}
        doc = {
            "model": model_id,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            **sampling,
        }
        body = json.dumps(doc).encode()
        timeout = httpx.Timeout(REQUEST_TIMEOUT)
        with httpx.Client(base_url=server.url, timeout=timeout) as client:
            keys = attested_keys(client)

            def run(kind: str) -> Trial:
                if kind == "direct":
                    return direct.trial(direct_options)
                if kind == "served":
                    return served_trial(server.port, body, keys)
                return client_trial(client, doc, keys, encrypt=kind == "hpke")

            kinds = list(KINDS)
            for kind in kinds:  # warm-up: first-call costs, prompt cache
                run(kind)
            pids = (os.getpid(), server.process.pid, direct.process.pid)
            attempts = 0
            busy: list[tuple[list[str], dict[str, Trial], dict[str, tuple[float, ...]]]] = []
            while len(result.trials["direct"]) < args.repeat and attempts < args.repeat * 4:
                rotation = attempts % len(kinds)
                attempts += 1
                order = kinds[rotation:] + kinds[:rotation]
                trials: dict[str, Trial] = {}
                cpu: dict[str, tuple[float, ...]] = {}
                watch = ForeignLoad(pids)
                for kind in order:
                    engine = direct.process.pid if kind == "direct" else server.process.pid
                    before = (
                        time.process_time(),
                        process_cpu(engine),
                        thread_cpu(server.process.pid),
                    )
                    trials[kind] = run(kind)
                    cpu[kind] = (
                        time.process_time() - before[0],
                        process_cpu(engine) - before[1],
                        thread_cpu(server.process.pid) - before[2],
                    )
                foreign = watch.cores()
                result.foreign_cores.append(round(foreign, 3))
                if foreign > args.quiet:
                    result.disturbed += 1
                    busy.append((order, trials, cpu))
                    if not args.json:
                        console.print(
                            f"  [yellow]repetition disturbed[/yellow] (other processes used "
                            f"{foreign:.2f} cores): repeated"
                        )
                    continue
                keep(result, order, trials, cpu)
                if not args.json:
                    console.print(
                        f"  repetition {len(result.trials['direct'])}/{args.repeat}: "
                        + ", ".join(f"{k} {trials[k].tok_s:.1f} tok/s" for k in kinds)
                    )
            if not result.trials["direct"]:
                # Never quiet: report what was measured, marked as such, rather than nothing.
                result.quiet = False
                for order, trials, cpu in busy:
                    keep(result, order, trials, cpu)
    finally:
        if direct is not None:
            direct.stop()
        server.stop()
    return result


# --------------------------------------------------------------------------------------------
# the gateway


@dataclass
class GatewayRound:
    tokens: int
    wall: float
    server_cpu: float
    upstream_cpu: float
    client_cpu: float
    errors: list[str]
    foreign_cores: float = 0.0

    @property
    def tok_s(self) -> float:
        return self.tokens / self.wall if self.wall else 0.0


TOKEN_MARK: Final = b'"delta":{"content":"'
EMPTY_MARK: Final = b'"delta":{"content":""'


async def gateway_stream(connection: RawConnection, request: bytes, expected: int) -> int:
    """One streamed answer: its content events counted (a substring test per event, cheaper
    than decoding JSON), its end checked (usage with ``expected`` tokens, signature, [DONE])."""
    tokens = 0
    buffer = b""
    last = b""
    async for status, data in connection.stream(request):
        if status != 200:
            raise ConnectionError(f"HTTP {status}: {data[:200]!r}")
        buffer += data
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            if TOKEN_MARK in event and EMPTY_MARK not in event:
                tokens += 1
            else:
                last = event if event != b"data: [DONE]" else last
    usage = json.loads(last[5:]) if last.startswith(b"data:") else {}
    if (
        "cllm_signature" not in usage
        or (usage.get("usage") or {}).get("completion_tokens") != expected
    ):
        raise ConnectionError(f"the stream did not end with a signed usage record: {last[:200]!r}")
    if tokens != expected:
        raise ConnectionError(f"{tokens} content events, expected {expected}")
    return tokens


async def gateway_round(
    connections: list[RawConnection],
    request: bytes,
    expected: int,
    server: ServeProcess,
    upstream: subprocess.Popen[bytes],
) -> GatewayRound:
    errors: list[str] = []

    async def one(connection: RawConnection) -> int:
        try:
            return await gateway_stream(connection, request, expected)
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            return 0

    watch = ForeignLoad((os.getpid(), server.process.pid, upstream.pid))
    cpu = (time.process_time(), server.cpu(), process_cpu(upstream.pid))
    started = time.perf_counter()
    counts = await asyncio.gather(*(one(c) for c in connections))
    wall = time.perf_counter() - started
    return GatewayRound(
        foreign_cores=watch.cores(),
        tokens=sum(counts),
        wall=wall,
        server_cpu=server.cpu() - cpu[1],
        upstream_cpu=process_cpu(upstream.pid) - cpu[2],
        client_cpu=time.process_time() - cpu[0],
        errors=errors,
    )


@dataclass
class GatewayResult:
    rounds: list[GatewayRound]  # the quiet rounds (or, when none was quiet, all of them)
    foreign_cores: list[float]  # of every round attempted
    quiet: bool = True


def run_gateway(args: argparse.Namespace, tmp: Path, console: Any) -> GatewayResult:
    upstream = worker_process("upstream", str(args.upstream_batch))
    server: ServeProcess | None = None
    try:
        port = int(read_line(upstream, "upstream")["port"])
        server = ServeProcess(
            tmp,
            "serve-gateway",
            [
                "--engine",
                "openai",
                "--upstream",
                f"http://{HOST}:{port}",
                "--model",
                UPSTREAM_MODEL,
                "--measure",
                str(Path(__file__).resolve()),
            ],
        )
        server.wait_ready()
        doc = {
            "model": UPSTREAM_MODEL,
            "messages": [{"role": "user", "content": "Count."}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": args.stream_tokens,
        }
        request = RawConnection.encode(CHAT_PATH, json.dumps(doc).encode())
        warm = RawConnection.encode(CHAT_PATH, json.dumps(doc | {"max_tokens": 50}).encode())
        active = server

        async def main() -> GatewayResult:
            connections = [await RawConnection.open(active.port) for _ in range(args.streams)]
            rounds: list[GatewayRound] = []
            busy: list[GatewayRound] = []
            foreign: list[float] = []
            try:
                await gateway_round(connections, warm, 50, active, upstream)  # warm-up
                attempts = 0
                while len(rounds) < args.rounds and attempts < args.rounds * 4:
                    attempts += 1
                    result = await gateway_round(
                        connections, request, args.stream_tokens, active, upstream
                    )
                    foreign.append(round(result.foreign_cores, 3))
                    if result.errors:
                        rounds.append(result)
                        break
                    if result.foreign_cores > args.quiet:
                        busy.append(result)
                        if not args.json:
                            console.print(
                                f"  [yellow]round disturbed[/yellow] ({result.tok_s:,.0f} tok/s; "
                                f"other processes used {result.foreign_cores:.2f} cores): repeated"
                            )
                        continue
                    rounds.append(result)
                    if not args.json:
                        console.print(
                            f"  round {len(rounds)}/{args.rounds}: {result.tok_s:,.0f} tok/s "
                            f"({result.tokens:,} tokens in {result.wall:.2f} s)"
                        )
            finally:
                for connection in connections:
                    await connection.close()
            if not rounds:  # never quiet: report the disturbed rounds, marked as such
                return GatewayResult(busy, foreign, quiet=False)
            return GatewayResult(rounds, foreign)

        result: GatewayResult = run_loop(main())
    finally:
        if server is not None:
            server.stop()
        if upstream.stdin is not None:
            upstream.stdin.close()
        stop_process(upstream)
    return result


# --------------------------------------------------------------------------------------------
# results


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    versions = {}
    for name in ("llama_cpp", "uvicorn", "httpx"):
        try:
            module = __import__(name)
            versions[name] = str(getattr(module, "__version__", "?"))
        except ImportError:
            versions[name] = "not installed"
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "commit": commit + (" (src/ modified)" if dirty else ""),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3]
        if Path("/proc/loadavg").exists()
        else None,
        **versions,
    }


def stream_interval_ms(args: argparse.Namespace) -> float:
    """The --stream-interval-ms cllm serve ran with (its default unless one was given)."""
    if args.stream_interval_ms is not None:
        return float(args.stream_interval_ms)
    from cllm.server import ServeSettings

    return float(ServeSettings.model_fields["stream_interval_ms"].default)


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rounded(value: float | None, digits: int) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return round(value, digits)


def summarise(
    llama: LlamaResult | None, rounds: list[GatewayRound] | None, args: argparse.Namespace
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "direct_tok_s": None,
        "served_tok_s": None,
        "ratio": None,
        "hpke_ratio": None,
        "ttft_overhead_ms": None,
        "gateway_tok_s": None,
    }
    goals: dict[str, bool | None] = dict.fromkeys(
        ("ratio", "ttft_overhead_ms", "hpke_ratio", "gateway_tok_s")
    )
    if llama is not None:
        trials = llama.trials
        tok = {k: med([t.tok_s for t in ts]) for k, ts in trials.items()}
        ttft = {k: med([t.ttft_ms for t in ts]) for k, ts in trials.items()}
        d_tok, s_tok, h_tok = tok["direct"], tok["served"], tok["hpke"]
        overhead = ttft["served"] - ttft["direct"]
        everything = [t for ts in trials.values() for t in ts]
        tokens = {t.tokens for t in everything}
        reference = trials["direct"][0].text

        def paired(kind: str) -> float:
            # Per repetition, so slow phases of the machine cancel out.
            pairs = zip(trials["direct"], trials[kind], strict=True)
            return med([t.tok_s / d.tok_s for d, t in pairs])

        out.update(
            direct_tok_s=rounded(d_tok, 2),
            served_tok_s=rounded(s_tok, 2),
            ratio=rounded(s_tok / d_tok, 4),
            hpke_ratio=rounded(h_tok / d_tok, 4),
            ttft_overhead_ms=rounded(overhead, 2),
        )
        goals.update(
            ratio=s_tok / d_tok >= GOAL_RATIO,
            ttft_overhead_ms=overhead <= GOAL_TTFT_OVERHEAD_MS,
            hpke_ratio=h_tok / d_tok >= GOAL_HPKE_RATIO,
        )
        out.update(
            hpke_tok_s=rounded(h_tok, 2),
            httpx_tok_s=rounded(tok["httpx"], 2),
            httpx_ratio=rounded(tok["httpx"] / d_tok, 4),
            ttft_ms={k: rounded(v, 2) for k, v in ttft.items()},
            hpke_ttft_overhead_ms=rounded(ttft["hpke"] - ttft["direct"], 2),
            ratio_paired_median=rounded(paired("served"), 4),
            hpke_ratio_paired_median=rounded(paired("hpke"), 4),
            httpx_ratio_paired_median=rounded(paired("httpx"), 4),
            spread={
                kind: {
                    "tok_s_min": rounded(min(t.tok_s for t in ts), 2),
                    "tok_s_max": rounded(max(t.tok_s for t in ts), 2),
                    "ttft_ms_min": rounded(min(t.ttft_ms for t in ts), 2),
                    "ttft_ms_max": rounded(max(t.ttft_ms for t in ts), 2),
                }
                for kind, ts in trials.items()
            },
            trials_tok_s={k: [rounded(t.tok_s, 2) for t in ts] for k, ts in trials.items()},
            trials_ttft_ms={k: [rounded(t.ttft_ms, 2) for t in ts] for k, ts in trials.items()},
            repeat=args.repeat,
            order=llama.order,
            disturbed_repetitions=llama.disturbed,
            machine_quiet=llama.quiet,
            foreign_cores=llama.foreign_cores,
            quiet_threshold_cores=args.quiet,
            max_tokens=args.max_tokens,
            tokens_generated=sorted(tokens),
            reached_max_tokens=tokens == {args.max_tokens},
            same_text=all(t.text == reference for t in everything),
            model=llama.model_id,
            n_threads=llama.n_threads,
            stream_interval_ms=stream_interval_ms(args),
            content_events_per_answer={
                k: med([len(t.times) for t in ts]) for k, ts in trials.items()
            },
            cpu_ms_per_token={
                kind: {
                    part: rounded(seconds / sum(t.tokens for t in trials[kind]) * 1000, 4)
                    for part, seconds in llama.cpu[kind].items()
                    if kind != "direct" or part == "engine"
                }
                for kind in trials
            },
        )
    if rounds:
        ok = [r for r in rounds if not r.errors]
        total = sum(r.tokens for r in ok)
        g_tok = med([r.tok_s for r in ok]) if ok else 0.0
        out["gateway_tok_s"] = round(g_tok, 1)
        goals["gateway_tok_s"] = g_tok >= GOAL_GATEWAY_TOK_S and len(ok) == len(rounds)
        out.update(
            gateway_rounds_tok_s=[round(r.tok_s, 1) for r in rounds],
            gateway_streams=args.streams,
            gateway_stream_tokens=args.stream_tokens,
            gateway_upstream_batch=args.upstream_batch,
            gateway_errors=[e for r in rounds for e in r.errors][:5],
            gateway_server_cpu_us_per_token=rounded(sum(r.server_cpu for r in ok) / total * 1e6, 2)
            if total
            else None,
            gateway_upstream_cpu_us_per_token=rounded(
                sum(r.upstream_cpu for r in ok) / total * 1e6, 2
            )
            if total
            else None,
            gateway_client_cpu_us_per_token=rounded(sum(r.client_cpu for r in ok) / total * 1e6, 2)
            if total
            else None,
        )
    out["goals"] = goals
    out["goals_met"] = all(v for v in goals.values() if v is not None)
    out["machine"] = machine()
    return out


def print_report(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    if result["direct_tok_s"] is not None:
        table = Table(
            title=f"embedded llama-cpp, {result['model']}, {result['max_tokens']} tokens, "
            f"{result['repeat']} interleaved repetitions (medians)"
        )
        columns = ("", "tok/s", "min", "max", "TTFT ms", "ratio", "paired", "CPU ms/token")
        for column in columns:
            table.add_column(column, justify="right" if column else "left")
        spread = result["spread"]
        cpu = result["cpu_ms_per_token"]
        direct = result["trials_tok_s"]["direct"]
        for kind, label in KIND_LABELS.items():
            tok_s = statistics.median(result["trials_tok_s"][kind])
            pairs = zip(direct, result["trials_tok_s"][kind], strict=True)
            parts = cpu[kind]
            table.add_row(
                label,
                f"{tok_s:.1f}",
                f"{spread[kind]['tok_s_min']:.1f}",
                f"{spread[kind]['tok_s_max']:.1f}",
                f"{result['ttft_ms'][kind]:.2f}",
                f"{tok_s / result['direct_tok_s']:.4f}",
                f"{statistics.median(t / d for d, t in pairs):.4f}",
                " / ".join(f"{parts[p]:.3f}" for p in ("engine", "loop", "client") if p in parts),
            )
        console.print(table)
        console.print(
            f"TTFT overhead {result['ttft_overhead_ms']} ms (HPKE "
            f"{result['hpke_ttft_overhead_ms']} ms); tokens per answer "
            f"{result['tokens_generated']}, same text on all sides: {result['same_text']}; "
            f"{result['disturbed_repetitions']} disturbed repetitions left out. CPU per token: "
            "engine process / its event-loop thread / this client process."
        )
    if result["gateway_tok_s"] is not None:
        console.print(
            f"gateway: {result['gateway_tok_s']:,.0f} tok/s (median of rounds "
            f"{result['gateway_rounds_tok_s']}), {result['gateway_streams']} streams x "
            f"{result['gateway_stream_tokens']} tokens; CPU per token: server "
            f"{result['gateway_server_cpu_us_per_token']} us, upstream "
            f"{result['gateway_upstream_cpu_us_per_token']} us, client "
            f"{result['gateway_client_cpu_us_per_token']} us"
        )
        if result["gateway_errors"]:
            console.print(f"[red]gateway errors[/red]: {result['gateway_errors']}")
    if result.get("machine_quiet") is False or result.get("gateway_machine_quiet") is False:
        console.print(
            "[yellow]other processes kept the CPUs busy during every attempt: these numbers "
            "measure the machine's load as much as cllm[/yellow]"
        )
    goals = result["goals"]
    labels = {
        "ratio": f"served / direct tok/s >= {GOAL_RATIO}",
        "ttft_overhead_ms": f"TTFT overhead <= {GOAL_TTFT_OVERHEAD_MS:.0f} ms",
        "hpke_ratio": f"HPKE / direct tok/s >= {GOAL_HPKE_RATIO}",
        "gateway_tok_s": f"gateway >= {GOAL_GATEWAY_TOK_S:,.0f} tok/s over 64 streams",
    }
    for key, label in labels.items():
        if goals[key] is not None:
            console.print(f"goal {label}: {'[green]met' if goals[key] else '[red]not met'}")
    m = result["machine"]
    console.print(
        f"{m['cpu']}, {m['cpus']} CPUs, Python {m['python']}, llama-cpp-python {m['llama_cpp']}, "
        f"{m['date']}, commit {m['commit']}, load {m['loadavg']}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=30, help="interleaved repetitions (30)")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per answer (128)")
    parser.add_argument("--model", help="a GGUF file (default: the packaged SmolLM2-135M)")
    parser.add_argument("--streams", type=int, default=64, help="gateway: concurrent streams")
    parser.add_argument(
        "--stream-tokens", type=int, default=2000, help="gateway: tokens per stream (2000)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="gateway: measured rounds (3)")
    parser.add_argument(
        "--upstream-batch",
        type=int,
        default=16,
        help="gateway: events the upstream writes per socket write (16)",
    )
    parser.add_argument("--only", choices=("llama", "gateway"), help="run one part only")
    parser.add_argument(
        "--stream-interval-ms",
        type=float,
        help="passed to cllm serve (default: its default; 0 sends every token alone)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="llama.cpp threads on both sides (default: os.cpu_count(), as cllm serve)",
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.05,
        help="a repetition or round during which other processes kept more than this many "
        "CPUs busy is repeated (0.05)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("worker_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is None and args.worker_args:
        parser.error(f"unexpected arguments {args.worker_args}")
    if min(args.repeat, args.max_tokens, args.streams, args.stream_tokens, args.rounds) < 1:
        parser.error("counts must be >= 1")
    if args.upstream_batch < 1:
        parser.error("--upstream-batch must be >= 1")
    return args


def main() -> int:
    args = parse_args()
    if args.worker == "direct":
        return direct_worker(args.worker_args[0], int(args.worker_args[1]))
    if args.worker == "upstream":
        return upstream_worker(int(args.worker_args[0]))
    from rich.console import Console

    from cllm.engine import default_model_path

    # Wide enough for the table when the output is not a terminal (``make bench``, logs).
    console = Console(stderr=args.json, width=None if sys.stdout.isatty() else 120)
    logging.getLogger("cllm.tee").setLevel(logging.ERROR)
    model_path = Path(args.model) if args.model else default_model_path()
    llama: LlamaResult | None = None
    rounds: list[GatewayRound] | None = None
    gateway: GatewayResult | None = None
    with tempfile.TemporaryDirectory(prefix="cllm-bench-serve-") as tmp:
        if args.only in (None, "llama"):
            if not args.json:
                console.print(f"embedded engine: {model_path.name}, {args.repeat} repetitions")
            llama = run_llama(args, Path(tmp), model_path, console)
        if args.only in (None, "gateway"):
            if not args.json:
                console.print(
                    f"gateway: {args.streams} streams x {args.stream_tokens} tokens, "
                    f"{args.rounds} rounds"
                )
            gateway = run_gateway(args, Path(tmp), console)
            rounds = gateway.rounds
    result = summarise(llama, rounds, args)
    if gateway is not None:
        result["gateway_machine_quiet"] = gateway.quiet
        result["gateway_foreign_cores"] = gateway.foreign_cores
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result, console)
    if rounds and any(r.errors for r in rounds):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
