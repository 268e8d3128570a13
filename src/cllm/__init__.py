"""cllm: confidential LLM inference with trust measurement and remote attestation."""

__version__ = "0.1.0"

__all__ = ["__version__"]
