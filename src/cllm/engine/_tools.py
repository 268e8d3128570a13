"""Tool use for the embedded engine: whether a chat template can render tools, the messages and
tools as templates expect them, the schema that forces a call, and reading calls out of text.

A GGUF chat template that never mentions ``tools`` cannot show the model any tool, so asking
such a model to use tools is refused (``tools_unsupported``) rather than silently ignored.
Models write calls as Hermes-style ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
blocks (Qwen, Hermes, SmolLM3 and most tool templates) or, Llama-3 style, as one bare JSON
object with ``name`` and ``arguments`` (or ``parameters``); both are read.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any, Final

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from cllm.engine._types import ChatMessage, Tool, ToolCall

__all__ = [
    "could_be_call",
    "forced_call_schema",
    "parse_calls",
    "read_forced_call",
    "template_messages",
    "template_supports_tools",
    "template_tools",
]

_BLOCK: Final = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_OPEN: Final = "<tool_call>"
# A model's text is at most the answer cap; JSON parsing of it is linear.


def template_supports_tools(template: str) -> bool:
    """True when the Jinja chat template reads the ``tools`` variable."""
    if not template:
        return False
    try:
        parsed = ImmutableSandboxedEnvironment().parse(template)
    except jinja2.TemplateSyntaxError:
        return False
    return "tools" in jinja2.meta.find_undeclared_variables(parsed)


def _arguments(text: str) -> object:
    # Templates (as Hugging Face's) expect arguments as a mapping; OpenAI sends JSON text.
    try:
        return json.loads(text)
    except ValueError:
        return text


def template_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        doc: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            doc["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": _arguments(c.arguments)},
                }
                for c in m.tool_calls
            ]
        if m.tool_call_id is not None:
            doc["tool_call_id"] = m.tool_call_id
        if m.name is not None:
            doc["name"] = m.name
        out.append(doc)
    return out


def template_tools(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
            },
        }
        for t in tools
    ]


def _call_schema(tool: Tool) -> dict[str, Any]:
    parameters = dict(tool.parameters) or {"type": "object"}
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": parameters},
        "required": ["name", "arguments"],
    }


def forced_call_schema(tools: Sequence[Tool], choice: str) -> dict[str, Any]:
    """The JSON schema of one call: of the tool named ``choice``, or of any tool
    (``"required"``)."""
    if choice != "required":
        return _call_schema(next(t for t in tools if t.name == choice))
    if len(tools) == 1:
        return _call_schema(tools[0])
    return {"anyOf": [_call_schema(t) for t in tools]}


def _new_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _call(doc: object, names: set[str]) -> ToolCall | None:
    if not isinstance(doc, dict):
        return None
    name = doc.get("name")
    arguments = doc.get("arguments", doc.get("parameters"))
    if not isinstance(name, str) or name not in names or not isinstance(arguments, dict):
        return None
    return ToolCall(_new_id(), name, json.dumps(arguments, ensure_ascii=False))


def read_forced_call(text: str, tools: Sequence[Tool]) -> ToolCall | None:
    try:
        return _call(json.loads(text), {t.name for t in tools})
    except ValueError:
        return None


def could_be_call(text: str) -> bool:
    """While the answer so far could still be a call, it is held back rather than streamed."""
    s = text.lstrip()
    return s == "" or _OPEN.startswith(s) or s.startswith(_OPEN) or s.startswith("{")


def parse_calls(text: str, tools: Sequence[Tool]) -> tuple[ToolCall, ...]:
    """The calls in a whole answer that consists of calls only; () when it is prose."""
    names = {t.name for t in tools}
    s = text.strip()
    if s.startswith(_OPEN):
        calls: list[ToolCall] = []
        for block in _BLOCK.findall(s):
            try:
                call = _call(json.loads(block), names)
            except ValueError:
                return ()
            if call is None:
                return ()
            calls.append(call)
        if _BLOCK.sub("", s).strip():  # prose besides the calls: not a pure call answer
            return ()
        return tuple(calls)
    if s.startswith("{"):
        try:
            call = _call(json.loads(s), names)
        except ValueError:
            return ()
        return (call,) if call is not None else ()
    return ()
