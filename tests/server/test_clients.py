"""Real clients nobody here wrote, against real ``cllm serve`` processes: the official ``openai``
and ``ollama`` packages, litellm, LangChain's ``ChatOpenAI`` and ``ChatOllama``, and the ``llm``
CLI (OpenAI-compatible through ``extra-openai-models.yaml``, Ollama through ``llm-ollama``).

Each does what users do: list models, show one, chat, stream, JSON mode and a schema that must
produce valid JSON, tools (a clear refusal for SmolLM2, whose chat template shows no tools; a
call and a second agent turn with a ``tool`` message for the same weights with a tool-aware
template), and the ``:latest`` name. Answers are capped at a few tokens to keep this quick.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest
from pydantic import BaseModel

from cllm.engine import default_model_path
from ggufs import TOOLS_TEMPLATE, with_chat_template
from serving import MODEL, ServeProcess, start_serve

# litellm fetches a price list from the internet at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

TOOLS_MODEL = "smollm2-tools"
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
JSON_ASK = [{"role": "user", "content": "Give a person's name and age as JSON."}]


class Person(BaseModel):
    name: str
    age: int


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "the city"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """The same weights with a chat template that shows tools (a Hermes-style one)."""
    root = tmp_path_factory.mktemp("tools")
    model = with_chat_template(default_model_path(), root / f"{TOOLS_MODEL}.gguf", TOOLS_TEMPLATE)
    server = start_serve(
        ["--model", str(model)], state_dir=root / "state", log_path=root / "serve.log"
    )
    yield server
    server.stop()


def _weather_turn(call_id: str, arguments: str) -> list[dict[str, Any]]:
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }
    return [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": "18 degrees and sunny"},
    ]


# --- the official openai package -----------------------------------------------------------


def _openai(server: ServeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_openai_json_mode_and_schema(served: ServeProcess) -> None:
    client = _openai(served)
    mode = client.chat.completions.create(
        model=MODEL,
        messages=JSON_ASK,  # type: ignore[arg-type]
        max_tokens=60,
        temperature=0,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(mode.choices[0].message.content or ""), dict)
    parsed = client.chat.completions.parse(
        model=f"{MODEL}:latest",
        messages=JSON_ASK,  # type: ignore[arg-type]
        max_tokens=60,
        temperature=0,
        response_format=Person,
    )
    person = parsed.choices[0].message.parsed
    assert isinstance(person, Person)


def test_openai_tools_are_refused_clearly_without_template_support(served: ServeProcess) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _openai(served).chat.completions.create(
            model=MODEL,
            messages=ASK,  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
            max_tokens=8,
        )
    assert caught.value.code == "tools_unsupported"
    assert "does not support tools" in str(caught.value)


def test_openai_tool_call_and_second_turn(tools: ServeProcess) -> None:
    client = _openai(tools)
    first = client.chat.completions.create(
        model=TOOLS_MODEL,
        messages=ASK,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=40,
        temperature=0,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    second = client.chat.completions.create(
        model=f"{TOOLS_MODEL}:latest",
        messages=_weather_turn(call.id, call.function.arguments),  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        max_tokens=12,
        temperature=0,
    )
    assert second.choices[0].message.content
    streamed = client.chat.completions.create(
        model=TOOLS_MODEL,
        messages=ASK,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        max_tokens=40,
        temperature=0,
        stream=True,
    )
    deltas = [c.choices[0].delta for c in streamed if c.choices]
    calls = [t for d in deltas for t in d.tool_calls or ()]
    assert calls and calls[0].function and calls[0].function.name == "get_weather"


# --- the official ollama package -----------------------------------------------------------


def test_ollama_show_ps_and_latest(served: ServeProcess) -> None:
    client = ollama.Client(host=served.url)
    shown = client.show(f"{MODEL}:latest")
    assert shown.capabilities == ["completion"]
    assert shown.details and shown.details.family == "llama"
    assert shown.modelinfo and shown.modelinfo["llama.context_length"] == 4096
    assert client.show(MODEL).template == shown.template
    [running] = client.ps().models
    assert running.model == f"{MODEL}:latest"
    answer = client.chat(model=MODEL, messages=ASK, options={"num_predict": 4})
    assert answer.eval_count == 4
    assert answer.eval_duration and answer.prompt_eval_duration and answer.total_duration


def test_ollama_json_format_and_schema(served: ServeProcess) -> None:
    client = ollama.Client(host=served.url)
    options = {"num_predict": 60, "temperature": 0}
    plain = client.chat(model=MODEL, messages=JSON_ASK, format="json", options=options)
    assert isinstance(json.loads(plain.message.content or ""), dict)
    shaped = client.chat(
        model=MODEL, messages=JSON_ASK, format=Person.model_json_schema(), options=options
    )
    Person.model_validate_json(shaped.message.content or "")


def test_ollama_tools_refused_then_called_with_a_tool_turn(
    served: ServeProcess, tools: ServeProcess
) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        ollama.Client(host=served.url).chat(
            model=MODEL, messages=ASK, tools=[WEATHER], options={"num_predict": 4}
        )
    assert caught.value.status_code == 400
    assert "does not support tools" in caught.value.error
    client = ollama.Client(host=tools.url)
    assert "tools" in (client.show(TOOLS_MODEL).capabilities or [])
    # Ollama's API has no tool_choice: the model decides (SmolLM2 answers in prose); then
    # the agent's second turn, with the tool's result, is accepted and answered.
    first = client.chat(
        model=TOOLS_MODEL, messages=ASK, tools=[WEATHER], options={"num_predict": 8}
    )
    assert first.done
    second = client.chat(
        model=f"{TOOLS_MODEL}:latest",
        messages=[
            *ASK,
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
                ],
            },
            {"role": "tool", "content": "18 degrees and sunny", "tool_name": "get_weather"},
        ],
        tools=[WEATHER],
        options={"num_predict": 12, "temperature": 0},
    )
    assert second.message.content


# --- litellm -------------------------------------------------------------------------------


def test_litellm_openai_and_ollama_routes(served: ServeProcess) -> None:
    import litellm

    openai_route = {"model": f"openai/{MODEL}", "api_base": f"{served.url}/v1", "api_key": "x"}
    answer = litellm.completion(messages=ASK, max_tokens=6, **openai_route)
    assert answer.choices[0].message.content
    chunks = list(litellm.completion(messages=ASK, max_tokens=6, stream=True, **openai_route))
    assert "".join(c.choices[0].delta.content or "" for c in chunks)
    shaped = litellm.completion(
        messages=JSON_ASK, max_tokens=60, temperature=0, response_format=Person, **openai_route
    )
    Person.model_validate_json(shaped.choices[0].message.content)
    ollama_route = {"model": f"ollama_chat/{MODEL}:latest", "api_base": served.url}
    shaped = litellm.completion(
        messages=JSON_ASK, max_tokens=60, temperature=0, response_format=Person, **ollama_route
    )
    Person.model_validate_json(shaped.choices[0].message.content)
    with pytest.raises(litellm.BadRequestError, match="does not support tools"):
        litellm.completion(messages=ASK, max_tokens=6, tools=[WEATHER], **openai_route)


def test_litellm_tool_call_and_second_turn(tools: ServeProcess) -> None:
    import litellm

    route = {"model": f"openai/{TOOLS_MODEL}", "api_base": f"{tools.url}/v1", "api_key": "x"}
    first = litellm.completion(
        messages=ASK,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=40,
        temperature=0,
        **route,
    )
    [call] = first.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    second = litellm.completion(
        messages=_weather_turn(call.id, call.function.arguments),
        tools=[WEATHER],
        max_tokens=12,
        **route,
    )
    assert second.choices[0].message.content


# --- LangChain -----------------------------------------------------------------------------


def test_langchain_chat_openai(served: ServeProcess, tools: ServeProcess) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=f"{served.url}/v1", api_key="x", model=MODEL, max_tokens=6, max_retries=0
    )
    assert llm.invoke("Say hi.").content
    assert "".join(str(c.content) for c in llm.stream("Say hi."))
    structured = ChatOpenAI(
        base_url=f"{served.url}/v1", api_key="x", model=MODEL, max_tokens=60, temperature=0
    )
    person = structured.with_structured_output(Person, method="json_schema").invoke(
        "Give a person's name and age as JSON."
    )
    assert isinstance(person, Person)
    with pytest.raises(openai.BadRequestError, match="does not support tools"):
        llm.bind_tools([WEATHER]).invoke("Weather in Paris?")

    agent = ChatOpenAI(
        base_url=f"{tools.url}/v1", api_key="x", model=TOOLS_MODEL, max_tokens=40, temperature=0
    ).bind_tools([WEATHER], tool_choice="get_weather")
    question = HumanMessage("What is the weather in Paris?")
    first = agent.invoke([question])
    [call] = first.tool_calls  # type: ignore[attr-defined]
    assert call["name"] == "get_weather"
    result = ToolMessage("18 degrees and sunny", tool_call_id=call["id"])
    follow = ChatOpenAI(
        base_url=f"{tools.url}/v1", api_key="x", model=TOOLS_MODEL, max_tokens=12, temperature=0
    ).bind_tools([WEATHER])
    assert follow.invoke([question, first, result]).content


def test_langchain_chat_ollama(served: ServeProcess, tools: ServeProcess) -> None:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_ollama import ChatOllama

    llm = ChatOllama(base_url=served.url, model=f"{MODEL}:latest", num_predict=6)
    assert llm.invoke("Say hi.").content
    assert "".join(str(c.content) for c in llm.stream("Say hi."))
    structured = ChatOllama(base_url=served.url, model=MODEL, num_predict=60, temperature=0)
    person = structured.with_structured_output(Person, method="json_schema").invoke(
        "Give a person's name and age as JSON."
    )
    assert isinstance(person, Person)
    with pytest.raises(ollama.ResponseError, match="does not support tools"):
        llm.bind_tools([WEATHER]).invoke("Weather in Paris?")

    agent = ChatOllama(base_url=tools.url, model=TOOLS_MODEL, num_predict=12, temperature=0)
    question = HumanMessage("What is the weather in Paris?")
    call = {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}
    turn = [question, AIMessage("", tool_calls=[call]), ToolMessage("18 C", tool_call_id="call_1")]
    assert agent.bind_tools([WEATHER]).invoke(turn).content


# --- llm, with llm-ollama and extra-openai-models.yaml --------------------------------------


@pytest.fixture
def llm_cli(served: ServeProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from click.testing import CliRunner
    from llm.cli import cli

    (tmp_path / "extra-openai-models.yaml").write_text(
        f"- model_id: cllm-openai\n  model_name: {MODEL}\n  api_base: {served.url}/v1\n"
        "  supports_schema: true\n"
    )
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path))
    monkeypatch.setenv("OLLAMA_HOST", served.url)
    monkeypatch.setenv("LLM_OPENAI_SHOW_RESPONSES", "")
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return run


def test_llm_cli_with_llm_ollama_and_openai_models(llm_cli: Any) -> None:
    models = llm_cli("models")
    assert models.exit_code == 0, models.output
    assert f"Ollama: ollama/{MODEL}:latest (aliases: ollama/{MODEL})" in models.output
    assert "cllm-openai" in models.output
    for model, cap in ((f"ollama/{MODEL}", "num_predict"), ("cllm-openai", "max_tokens")):
        said = llm_cli("-m", model, "Say hi.", "-o", cap, "6", "--no-log")
        assert said.exit_code == 0, said.output
        assert said.output.strip()
        shaped = llm_cli(
            "-m", model, "A person", "--schema", "name, age int", "-o", cap, "60", "--no-log"
        )
        assert shaped.exit_code == 0, shaped.output
        doc = json.loads(shaped.output)
        assert isinstance(doc["name"], str) and isinstance(doc["age"], int)
    # llm-ollama reads the capabilities from /api/show: no "tools", so llm itself refuses.
    tool = "def weather(city: str) -> str:\n    return 'sunny'"
    refused = llm_cli("-m", f"ollama/{MODEL}:latest", "Weather?", "--functions", tool, "--no-log")
    assert refused.exit_code != 0
    assert "tool" in refused.output.lower()
