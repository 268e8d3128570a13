"""Access to the real-hardware corpus ../shared/tdx-vectors (or $CLLM_VECTORS), read in place.

Tests that need it skip with a reason when it is absent; nothing from it is copied here.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


@cache
def vectors_dir() -> Path | None:
    configured = os.environ.get("CLLM_VECTORS")
    candidate = Path(configured) if configured else REPO.parent / "shared" / "tdx-vectors"
    return candidate if (candidate / "cases.json").is_file() else None


SKIP_REASON = "real-hardware corpus not found (../shared/tdx-vectors or $CLLM_VECTORS)"


def require_vectors() -> Path:
    found = vectors_dir()
    if found is None:
        pytest.skip(SKIP_REASON)
    return found


@cache
def cases_doc() -> dict[str, Any]:
    found = vectors_dir()
    if found is None:
        return {"cases": [], "parse_only": [], "unparseable_or_test_keys": []}
    doc: dict[str, Any] = json.loads((found / "cases.json").read_text())
    return doc


def cases() -> list[dict[str, Any]]:
    return list(cases_doc()["cases"])


def case(case_id: str) -> dict[str, Any]:
    require_vectors()
    for entry in cases():
        if entry["id"] == case_id:
            return entry
    raise KeyError(case_id)


def read(relative: str) -> bytes:
    return (require_vectors() / relative).read_bytes()


def params(entries: list[dict[str, Any]]) -> list[Any]:
    """pytest params named by case id; one skipped placeholder when the corpus is absent."""
    if not entries:
        return [pytest.param(None, marks=pytest.mark.skip(reason=SKIP_REASON), id="no-corpus")]
    return [pytest.param(entry, id=entry["id"]) for entry in entries]
