"""The attestation service (``cllm verifier serve``): evidence in, a signed EAR-style token out.

Routes: ``POST /v1/attestation``, ``GET /.well-known/jwks.json``, ``GET /v1/policies``,
``GET /healthz`` and the OpenAPI schema. A failed verification is a signed ``contraindicated``
token; HTTP 4xx is only for requests that are malformed as requests.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from cllm import __version__
from cllm.policy import Policy, load_policies
from cllm.tee import SIMULATED_QE_VENDOR_ID
from cllm.token import TokenSigner
from cllm.verifier._appraise import EvidenceAppraiser
from cllm.verifier._collateral_source import CollateralSource
from cllm.verifier._settings import VerifierSettings
from cllm.verify import (
    CollateralFetcher,
    QuoteVerifier,
    TrustRoot,
    default_collateral_url,
    intel_root,
)

__all__ = ["AttestationRequest", "VerifierState", "create_app", "load_state"]

_log = logging.getLogger(__name__)


class AttestationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    evidence: dict[str, Any]
    nonce: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="the client's 32-byte nonce, hex")
    policy: str = Field(default="default", max_length=64)


class AttestationResponse(BaseModel):
    token: str


@dataclass(frozen=True, slots=True)
class VerifierState:
    settings: VerifierSettings
    appraiser: EvidenceAppraiser
    policies: Mapping[str, Policy]
    signer: TokenSigner
    clock: Callable[[], float]


def load_state(
    settings: VerifierSettings, *, clock: Callable[[], float] = time.time
) -> VerifierState:
    """Everything the service needs, built once at start: policies (an invalid one stops the
    start), the token key, the trust roots and collateral sources."""
    policies = load_policies(settings.policy_dir)
    simulated = None
    if settings.trust_simulated_root is not None:
        root = TrustRoot.from_pem_file(
            settings.trust_simulated_root,
            name="simulation root",
            qe_vendor_id=SIMULATED_QE_VENDOR_ID,
        )
        if root.is_intel_production:
            raise ValueError("--trust-simulated-root must not be Intel's root")
        _log.warning("trusting SIMULATED evidence under %s (at best 'warning')", root.sha256)
        simulated = QuoteVerifier(trust_root=root)
    url = settings.pccs_url or default_collateral_url()
    fetcher = CollateralFetcher(base_url=url, client=httpx.Client(timeout=30.0), clock=clock)
    appraiser = EvidenceAppraiser(
        intel=QuoteVerifier(trust_root=intel_root()),
        simulated=simulated,
        collateral=CollateralSource(offline_dir=settings.collateral_dir, fetcher=fetcher),
    )
    return VerifierState(
        settings=settings,
        appraiser=appraiser,
        policies=policies,
        signer=TokenSigner.load_or_create(settings.state_dir),
        clock=clock,
    )


def create_app(state: VerifierState) -> FastAPI:
    app = FastAPI(
        title="cllm attestation service",
        version=__version__,
        description="Verifies TDX evidence (DCAP quote, event logs, binding) against a policy "
        "and returns a signed EAR-style token (ES256, keys at /.well-known/jwks.json).",
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(state.settings.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["content-type"],
    )
    limit = state.settings.max_body_bytes

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)
        if request.method == "POST" and declared is None:
            body = await request.body()  # chunked: read, bounded by the check below
            if len(body) > limit:
                return JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)
        request_id = uuid.uuid4().hex[:12]
        started = time.perf_counter()
        response = await call_next(request)
        # Logs carry ids, sizes and timings only, never evidence contents.
        _log.info(
            "%s %s %s %d %.1fms",
            request_id,
            request.method,
            request.url.path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    @app.post("/v1/attestation", response_model=AttestationResponse)
    def attest(body: AttestationRequest) -> AttestationResponse:
        policy = state.policies.get(body.policy)
        if policy is None:
            raise HTTPException(status_code=404, detail=f"unknown policy {body.policy!r}")
        now = int(state.clock())
        verdict = state.appraiser.appraise(
            body.evidence, nonce=bytes.fromhex(body.nonce), policy=policy, at=now
        )
        claims = {
            **verdict.claims,
            "status": verdict.status,
            "reasons": [reason.to_json() for reason in verdict.reasons],
        }
        token = state.signer.issue(
            claims, now=now, lifetime=policy.max_token_age, issuer=state.settings.issuer
        )
        return AttestationResponse(token=token)

    @app.get("/.well-known/jwks.json")
    def jwks() -> dict[str, Any]:
        return dict(state.signer.jwks())

    @app.get("/v1/policies")
    def policies() -> dict[str, Any]:
        return {
            "policies": [
                {"id": policy.id, "sha256": policy.sha256}
                for policy in sorted(state.policies.values(), key=lambda p: p.id)
            ]
        }

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
