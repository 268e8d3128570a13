"""Inference engines behind ``cllm serve``: embedded llama.cpp (default), or an upstream Ollama
or OpenAI-compatible server."""

from cllm.engine._llama import LlamaCppEngine, default_model_path
from cllm.engine._types import (
    ChatMessage,
    ChatRequest,
    Engine,
    EngineBusyError,
    FieldRefusedError,
    Finish,
    FinishReason,
    JsonFormat,
    ModelInfo,
    Sampling,
    TextPiece,
    Timings,
    Tool,
    ToolCall,
    ToolCalls,
    complete,
    complete_with_tools,
)
from cllm.engine._upstream import OllamaEngine, OpenAIEngine

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "Engine",
    "EngineBusyError",
    "FieldRefusedError",
    "Finish",
    "FinishReason",
    "JsonFormat",
    "LlamaCppEngine",
    "ModelInfo",
    "OllamaEngine",
    "OpenAIEngine",
    "Sampling",
    "TextPiece",
    "Timings",
    "Tool",
    "ToolCall",
    "ToolCalls",
    "complete",
    "complete_with_tools",
    "default_model_path",
]
