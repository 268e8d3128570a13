"""Inference engines behind ``cllm serve``: embedded llama.cpp (default), or an upstream Ollama
or OpenAI-compatible server."""

from cllm.engine._llama import DEFAULT_MODEL_FILE, LlamaCppEngine, default_model_path
from cllm.engine._types import (
    ChatMessage,
    ChatRequest,
    Engine,
    Finish,
    FinishReason,
    ModelInfo,
    Sampling,
    TextPiece,
    complete,
)
from cllm.engine._upstream import OllamaEngine, OpenAIEngine

__all__ = [
    "DEFAULT_MODEL_FILE",
    "ChatMessage",
    "ChatRequest",
    "Engine",
    "Finish",
    "FinishReason",
    "LlamaCppEngine",
    "ModelInfo",
    "OllamaEngine",
    "OpenAIEngine",
    "Sampling",
    "TextPiece",
    "complete",
    "default_model_path",
]
