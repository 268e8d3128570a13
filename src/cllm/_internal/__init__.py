"""Helpers several cllm packages share: not a public API.

Each package keeps its own modules private (``cllm.<pkg>._x``) and exposes a short public API
in its ``__init__``; code that more than one package needs, and that belongs to none of them,
lives here instead (``tests/test_imports.py`` enforces the rule). Names here may change
without notice.
"""
