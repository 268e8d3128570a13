"""Tool use in the embedded engine: which templates can show tools, and the answers read back as
calls (Hermes ``<tool_call>`` blocks, a bare ``{"name", "arguments"}`` object) or left as prose,
streamed only once they cannot be a call any more. llama.cpp is a stand-in that says a script."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from cllm.engine import (
    ChatMessage,
    ChatRequest,
    FieldRefusedError,
    Finish,
    LlamaCppEngine,
    ModelInfo,
    Sampling,
    TextPiece,
    Tool,
    ToolCalls,
)
from cllm.engine._tools import parse_calls, template_supports_tools
from ggufs import TOOLS_TEMPLATE

WEATHER = Tool("get_weather", "weather", {"type": "object", "properties": {"city": {}}})
CLOCK = Tool("get_time", "time", {"type": "object"})
SMOLLM2 = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
)


@pytest.mark.parametrize(
    ("template", "supported"),
    [(TOOLS_TEMPLATE, True), (SMOLLM2, False), ("", False), ("{% if %}", False)],
)
def test_templates_that_read_tools_support_them(template: str, supported: bool) -> None:
    assert template_supports_tools(template) is supported


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
            ["get_weather"],
        ),
        (
            '<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>\n'
            '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>',
            ["get_weather", "get_time"],
        ),
        ('  {"name": "get_time", "parameters": {}}', ["get_time"]),
        ('{"name": "rm_rf", "arguments": {}}', []),  # not a tool that was offered
        ('<tool_call>{"name": "get_time", "arguments": {}}</tool_call> and prose', []),
        ("<tool_call>{not json}</tool_call>", []),
        ('{"name": "get_time", "arguments": "later"}', []),
        ("It is sunny.", []),
    ],
)
def test_calls_are_read_from_whole_answers(text: str, names: list[str]) -> None:
    calls = parse_calls(text, [WEATHER, CLOCK])
    assert [c.name for c in calls] == names
    for call in calls:
        assert isinstance(json.loads(call.arguments), dict)
        assert call.id.startswith("call_")


class _Scripted:
    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = tokens
        self.options: dict[str, Any] = {}
        self.n_tokens = 0

    def create_chat_completion(self, *, messages: list[dict[str, Any]], **options: Any) -> Any:
        self.options = options
        self.messages = messages

        def chunks() -> Iterator[dict[str, Any]]:
            for token in self.tokens:
                self.n_tokens += 1
                yield {"choices": [{"delta": {"content": token}, "finish_reason": None}]}
            yield {"choices": [{"delta": {}, "finish_reason": "stop"}]}

        return chunks()


def _run(tokens: Sequence[str], request: ChatRequest) -> tuple[list[object], _Scripted]:
    engine = LlamaCppEngine(
        model_path=Path("unused.gguf"),
        model=ModelInfo("m", 0, "", template=TOOLS_TEMPLATE, supports_tools=True),
    )
    fake = _Scripted(tokens)
    engine._llama = fake  # type: ignore[assignment]  # the stand-in for a loaded model

    async def collect() -> list[object]:
        return [item async for item in engine.chat(request)]

    return asyncio.run(collect()), fake


def _ask(**kwargs: Any) -> ChatRequest:
    return ChatRequest(
        (ChatMessage("user", "Weather in Paris?"),), Sampling(max_tokens=50), **kwargs
    )


def test_an_answer_that_is_a_call_becomes_tool_calls() -> None:
    script = [
        "<tool",
        "_call>",
        '{"name": "get_weather", ',
        '"arguments": {"city": "Paris"}}',
        "</tool_call>",
    ]
    items, fake = _run(script, _ask(tools=(WEATHER,)))
    assert not [i for i in items if isinstance(i, TextPiece)]  # never streamed as text
    [calls] = [i for i in items if isinstance(i, ToolCalls)]
    assert [(c.name, json.loads(c.arguments)) for c in calls.calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    finish = items[-1]
    assert isinstance(finish, Finish) and finish.reason == "tool_calls"
    assert fake.options["tools"][0]["function"]["name"] == "get_weather"  # shown to the model
    assert "grammar" not in fake.options  # auto: the model decides, unconstrained


def test_prose_is_released_once_it_cannot_be_a_call() -> None:
    items, _ = _run(["\n", "It", " is", " sunny", "."], _ask(tools=(WEATHER,)))
    text = [i.text for i in items if isinstance(i, TextPiece)]
    assert "".join(text) == "\nIt is sunny."
    assert len(text) >= 2  # streamed once it was clearly prose, not held to the end
    assert isinstance(items[-1], Finish) and items[-1].reason == "stop"


def test_json_that_is_no_call_is_answered_as_text() -> None:
    items, _ = _run(['{"city"', ': "Paris"}'], _ask(tools=(WEATHER,)))
    assert "".join(i.text for i in items if isinstance(i, TextPiece)) == '{"city": "Paris"}'


def test_parallel_tool_calls_false_keeps_one_call() -> None:
    two = [
        '<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>',
        '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>',
    ]
    items, _ = _run(two, _ask(tools=(WEATHER, CLOCK)))
    assert len(next(i for i in items if isinstance(i, ToolCalls)).calls) == 2
    items, _ = _run(two, _ask(tools=(WEATHER, CLOCK), parallel_tool_calls=False))
    assert len(next(i for i in items if isinstance(i, ToolCalls)).calls) == 1


def test_a_forced_call_is_decoded_under_a_grammar() -> None:
    items, fake = _run(
        ['{"name": "get_time", "arguments": {}}'],
        _ask(tools=(WEATHER, CLOCK), tool_choice="get_time"),
    )
    assert fake.options["grammar"] is not None
    [calls] = [i for i in items if isinstance(i, ToolCalls)]
    assert calls.calls[0].name == "get_time"
    with pytest.raises(FieldRefusedError) as caught:
        _run([], _ask(tools=(WEATHER,), tool_choice="get_time"))
    assert caught.value.field == "tool_choice"


def test_tool_choice_none_shows_no_tools() -> None:
    items, fake = _run(["Sunny."], _ask(tools=(WEATHER,), tool_choice="none"))
    assert "tools" not in fake.options
    assert "".join(i.text for i in items if isinstance(i, TextPiece)) == "Sunny."
