"""What both API fronts do around the engine: model names (``NAME`` is ``NAME:latest``), the
server's default answer cap, and waiting for the engine while watching the client.

A request is started on the engine before any answer byte goes out, so a field the engine
refuses (400) or a full queue (429) still gets a proper status; while it waits for the engine
(queued behind others, or reading a long prompt) a client that hangs up is noticed and its
request leaves the queue or stops, streamed or not.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from fastapi import Request

from cllm.engine import ChatRequest, Engine, Finish, ModelInfo, TextPiece, ToolCalls
from cllm.errors import CllmError

__all__ = [
    "ClientGoneError",
    "base_name",
    "capped",
    "chain",
    "guarded",
    "matches",
    "served_name",
    "started",
]

_T = TypeVar("_T")

Item = TextPiece | ToolCalls | Finish


class ClientGoneError(CllmError):
    default_code = "client_gone"


def served_name(model: ModelInfo) -> str:
    """The Ollama-style name: tagged, ``:latest`` when the id has no tag."""
    return model.id if ":" in model.id else f"{model.id}:latest"


def base_name(name: str) -> str:
    return name.removesuffix(":latest")


def matches(requested: str, model: ModelInfo) -> bool:
    """``NAME`` and ``NAME:latest`` are the same model, as Ollama has it."""
    return base_name(requested) == base_name(model.id)


def capped(chat: ChatRequest, default_max_tokens: int) -> ChatRequest:
    """The request with the server's default answer cap when it set none."""
    if chat.sampling.max_tokens is not None:
        return chat
    sampling = dataclasses.replace(chat.sampling, max_tokens=default_max_tokens)
    return dataclasses.replace(chat, sampling=sampling)


async def _gone(request: Request) -> None:
    # The body has been read: the next message is the disconnect, whenever it comes.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def guarded(request: Request, work: Awaitable[_T]) -> _T:
    """``work``'s result, or ``ClientGoneError`` (and ``work`` cancelled) when the client
    leaves first."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_gone(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # its clean-up (leaving the queue) runs before we go
    if task.cancelled():
        raise ClientGoneError("the client went away", code="client_gone")
    return task.result()


async def started(
    request: Request, engine: Engine, chat: ChatRequest
) -> tuple[Item, AsyncIterator[Item]]:
    """The engine's first item (raises what the engine raises before it: refused fields, a
    full queue, failures) and the rest of the stream."""
    items = aiter(engine.chat(chat))
    try:
        first = await guarded(request, anext(items))
    except BaseException:
        close = getattr(items, "aclose", None)
        if close is not None:
            await close()
        raise
    return first, items


async def chain(first: Item, rest: AsyncIterator[Item]) -> AsyncIterator[Item]:
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        close = getattr(rest, "aclose", None)
        if close is not None:
            await close()
