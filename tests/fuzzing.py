"""Hypothesis settings for fuzz tests: a fixed example budget, scaled by $CLLM_FUZZ_SCALE, no
deadline (CI machines are slow and shared) and no example database (nothing written to disk)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = float(os.environ.get("CLLM_FUZZ_SCALE", "1"))


def budget(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
