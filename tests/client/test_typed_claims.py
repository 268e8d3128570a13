"""The SDK parses a verifier's token with the typed claims (issue 15): a token signed by the
verifier's own key but with a claim of the wrong type, an unknown status or a malformed GPU
entry grants nothing (``verifier_malformed``), while a well-typed one is decided by ``permits``.
The verifier here is an in-process stand-in (httpx.MockTransport) that signs whatever it is
told to, as a compromised or buggy verifier would."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from cllm.client import RemoteVerifier
from cllm.tee import load_simulated_world
from cllm.token import TokenSigner
from simulated_evidence import simulated_evidence

SIGNER = TokenSigner.from_private_key(generate_private_key(SECP256R1()))


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], bytes]:
    return simulated_evidence(load_simulated_world(tmp_path_factory.mktemp("td"), clock=time.time))


def _verifier(edit: Callable[[dict[str, Any]], None]) -> RemoteVerifier:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/jwks.json":
            return httpx.Response(200, json=SIGNER.jwks())
        posted = json.loads(request.content)
        claims: dict[str, Any] = {
            "nonce": posted["nonce"],
            "tee": "simulated-tdx",
            "simulated": True,
            "tcb": {"status": "UpToDate", "advisory_ids": [], "collateral_expires": 0},
            "components": [],
            "keys": posted["evidence"]["binding"],
            "policy": {"id": "default", "sha256": "0" * 64},
            "reference": None,
            "upstream": {"scope": "embedded", "host": None},
            "status": "warning",
            "reasons": [{"code": "simulated_evidence", "message": "m"}],
        }
        edit(claims)
        token = SIGNER.issue(claims, now=int(time.time()), lifetime=300, issuer="stand-in")
        return httpx.Response(200, json={"token": token})

    http = httpx.Client(transport=httpx.MockTransport(handle))
    return RemoteVerifier("http://127.0.0.1:1", http=http)


def _set(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda claims: claims.update(values)


def test_a_well_typed_warning_permits_the_keys(evidence: tuple[dict[str, Any], bytes]) -> None:
    document, nonce = evidence
    result = _verifier(_set()).appraise(document, nonce=nonce)
    assert (result.status, [r.code for r in result.reasons]) == ("warning", ["simulated_evidence"])
    assert result.keys is not None
    assert result.permits().permitted
    assert result.permits(allow_warning=False).code == "attestation_warning"


@pytest.mark.parametrize(
    ("edit", "detail"),
    [
        (_set(status="Affirming"), "unknown status 'Affirming'"),
        (_set(status=None), "unknown status None"),
        (_set(simulated="no"), "invalid field"),
        (_set(tcb={"status": "UpToDate", "collateral_expires": "never"}), "invalid field"),
        (_set(upstream={"scope": "nowhere", "host": None}), "invalid field"),
        (_set(gpus=[{"index": 0, "status": "fine", "simulated": False}]), "invalid field"),
        (_set(reasons=[{"code": "x"}]), "invalid field"),
    ],
    ids=["status-case", "status-null", "bool-as-text", "int-as-text", "scope", "gpu", "reason"],
)
def test_a_mistyped_token_grants_nothing(
    evidence: tuple[dict[str, Any], bytes], edit: Callable[[dict[str, Any]], None], detail: str
) -> None:
    document, nonce = evidence
    result = _verifier(edit).appraise(document, nonce=nonce)
    assert result.status == "contraindicated"
    assert [r.code for r in result.reasons] == ["verifier_malformed"]
    assert detail in result.reasons[0].message
    assert result.keys is None
    assert result.permits().code == "attestation_failed"
