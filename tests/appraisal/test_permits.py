"""The one rule for using a verdict's keys (issue 15): ``cllm.appraisal.permits`` against the
vectors the UI's ``npm test`` checks too, and every Python caller deciding through it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cllm.appraisal import Status, permits
from cllm.client import PinnedKeys, Verification
from cllm.policy import Reason

VECTORS: Any = json.loads((Path(__file__).parent / "permit_vectors.json").read_text())
CASES = VECTORS["cases"]


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_the_rule_matches_the_shared_vectors(case: dict[str, Any]) -> None:
    permit = permits(
        status=case["status"],
        has_keys=case["has_keys"],
        allow_warning=case["allow_warning"],
        expired=case["expired"],
    )
    assert (permit.permitted, permit.code) == (case["permitted"], case["code"])
    assert bool(permit) is case["permitted"]
    assert (permit.message == "") is case["permitted"]


KEYS = PinnedKeys(signing_key=b"s", hpke_key=b"h", tls_spki_sha256=None)


@pytest.mark.parametrize(
    "case",
    [case for case in CASES if isinstance(case["status"], str) and case["status"] in set(Status)],
    ids=lambda case: case["name"],
)
def test_verification_decides_through_the_rule(case: dict[str, Any]) -> None:
    verification = Verification(
        status=Status(case["status"]),
        reasons=(Reason("x", "y"),),
        claims={},
        verifier="local",
        checked_at=1000,
        keys=KEYS if case["has_keys"] else None,
        expires_at=1300,
    )
    now = 1300 if case["expired"] else 1299  # expired from expires_at on, to the second
    permit = verification.permits(allow_warning=case["allow_warning"], now=now)
    assert (permit.permitted, permit.code) == (case["permitted"], case["code"])
    if not case["expired"]:
        assert (
            verification.trusted
            is permits(status=case["status"], has_keys=case["has_keys"]).permitted
        )


def test_one_status_enum_everywhere() -> None:
    import cllm.client
    import cllm.policy

    assert cllm.client.Status is cllm.policy.Status is Status
    assert [status.value for status in Status] == ["affirming", "warning", "contraindicated"]
    assert json.dumps({"status": Status.WARNING}) == '{"status": "warning"}'
