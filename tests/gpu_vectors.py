"""Access to the real GPU corpus ../shared/gpu-vectors (or $CLLM_GPU_VECTORS), read in place.

Tests that need it skip with a reason when it is absent; nothing from it is copied here.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SKIP_REASON = "GPU corpus not found (../shared/gpu-vectors or $CLLM_GPU_VECTORS)"


@cache
def corpus_dir() -> Path | None:
    configured = os.environ.get("CLLM_GPU_VECTORS")
    candidate = Path(configured) if configured else REPO.parent / "shared" / "gpu-vectors"
    return candidate if (candidate / "cases.json").is_file() else None


def require() -> Path:
    found = corpus_dir()
    if found is None:
        pytest.skip(SKIP_REASON)
    return found


@cache
def doc() -> dict[str, Any]:
    found = corpus_dir()
    if found is None:
        return {"evidence": [], "rims": [], "appraisals": [], "nras": [], "parser_only": []}
    loaded: dict[str, Any] = json.loads((found / "cases.json").read_text())
    return loaded


def read(relative: str) -> bytes:
    return (require() / relative).read_bytes()


def at(case: dict[str, Any], key: str = "at") -> int:
    return int(datetime.fromisoformat(case[key]).timestamp())


def evidence(case_id: str) -> dict[str, Any]:
    for entry in doc()["evidence"]:
        if entry["id"] == case_id:
            return dict(entry)
    pytest.skip(SKIP_REASON)
    raise AssertionError  # unreachable


def params(entries: list[dict[str, Any]], key: str = "id") -> list[Any]:
    if not entries:
        return [pytest.param(None, marks=pytest.mark.skip(reason=SKIP_REASON), id="no-corpus")]
    return [pytest.param(entry, id=str(entry[key]).split("/")[-1]) for entry in entries]
