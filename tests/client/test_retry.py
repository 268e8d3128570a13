"""The SDK's attestation waits out 429 and 503 (over our share, or the server busy): it honours
Retry-After, asks again with the same nonce, and in the end gives a refusal that names the
cause; other failures are not retried."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from cllm.client import attest
from cllm.client._verify import Verification, retry_delay


class Stub:
    name = "stub"

    def __init__(self) -> None:
        self.nonces: list[bytes] = []

    def appraise(self, document: Mapping[str, Any], *, nonce: bytes) -> Verification:
        self.nonces.append(nonce)
        return Verification("warning", (), {"nonce": nonce.hex()}, "stub", 0)


def _server(statuses: list[int], seen: list[str], retry_after: str = "2") -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params["nonce"])
        status = statuses.pop(0) if statuses else 429
        if status == 200:
            return httpx.Response(200, json={"version": 2})
        return httpx.Response(
            status, json={"error": {"code": "x"}}, headers={"Retry-After": retry_after}
        )

    return httpx.Client(base_url="http://server.invalid", transport=httpx.MockTransport(handle))


def test_429_and_503_are_waited_out_with_the_same_nonce() -> None:
    seen: list[str] = []
    slept: list[float] = []
    stub = Stub()
    result = attest(_server([429, 503, 200], seen), stub, sleep=slept.append)
    assert result.status == "warning"
    assert len(seen) == 3 and len(set(seen)) == 1
    assert stub.nonces[0].hex() == seen[0]
    assert len(slept) == 2 and all(2.0 <= s <= 2.5 for s in slept)  # Retry-After, with jitter


def test_a_server_that_stays_busy_is_refused_with_its_cause() -> None:
    seen: list[str] = []
    slept: list[float] = []
    result = attest(_server([], seen, retry_after="9"), Stub(), sleep=slept.append)
    assert result.status == "contraindicated"
    assert result.keys is None
    assert [r.code for r in result.reasons] == ["evidence_rate_limited"]
    assert sum(slept) <= 30  # bounded


def test_other_failures_are_not_retried() -> None:
    seen: list[str] = []
    result = attest(_server([500], seen), Stub(), sleep=lambda _: None)
    assert [r.code for r in result.reasons] == ["evidence_unavailable"]
    assert len(seen) == 1


def test_retry_delay() -> None:
    assert 0.25 <= retry_delay(None, 0) <= 0.32
    assert 8 <= retry_delay(None, 10) <= 10
    assert 3 <= retry_delay("3", 0) <= 3.75
    assert 10 <= retry_delay("3600", 0) <= 12.5  # capped
    assert 0.5 <= retry_delay("soon", 1) <= 0.63  # unusable: backoff
    assert 2 <= retry_delay("0", 3) <= 2.5  # never less than the backoff
