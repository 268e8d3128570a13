"""The attestation service (``cllm verifier serve``): evidence in, a signed EAR-style token out.

Routes: ``POST /v1/attestation``, ``GET /.well-known/jwks.json``, ``GET /v1/policies``,
``GET /healthz`` and the OpenAPI schema. A failed verification is a signed ``contraindicated``
token; HTTP 4xx is only for requests that are malformed as requests.
"""

from __future__ import annotations

import email.message
import gc
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import httpx
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cllm import __version__
from cllm.appraisal import EvidenceAppraiser, Trust, Verdict
from cllm.policy import Policy, load_policies
from cllm.token import TokenSigner
from cllm.verifier._settings import VerifierSettings

__all__ = [
    "AttestationRequest",
    "BodyLimit",
    "VerifierState",
    "app_from_environment",
    "create_app",
    "load_state",
]

_log = logging.getLogger(__name__)


class AttestationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    evidence: dict[str, Any]
    nonce: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="the client's 32-byte nonce, hex")
    policy: str = Field(default="default", max_length=64)


class AttestationResponse(BaseModel):
    token: str


def _is_json(content_type: str | None) -> bool:
    """FastAPI's rule for decoding a body as JSON: no content type, or application/json or
    application/*+json (parameters allowed)."""
    if not content_type or content_type == "application/json":
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def parse_attestation_request(body: bytes, content_type: str | None) -> AttestationRequest:
    """The request body decoded and validated once, exactly as a FastAPI body parameter of type
    ``AttestationRequest`` would be: the same 422 details (``loc`` under ``body``), the same 400
    for bodies that are not text, the same treatment of non-JSON content types."""
    value: Any = None
    if body:
        if _is_json(content_type):
            try:
                value = json.loads(body)
            except json.JSONDecodeError as exc:
                error = {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
                raise RequestValidationError([error], body=exc.doc) from exc
            except Exception as exc:  # not UTF-8/16/32, nested too deep, ...
                raise HTTPException(
                    status_code=400, detail="There was an error parsing the body"
                ) from exc
        else:
            value = body
    if value is None:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing], body=value)
    try:
        return AttestationRequest.model_validate(value, from_attributes=True)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors, body=value) from None


def _token_response(token: str) -> Response:
    # What JSONResponse({"token": token}) renders; a JWS needs no JSON escaping.
    return Response(b'{"token":"' + token.encode("ascii") + b'"}', media_type="application/json")


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
    trust = Trust.production(
        collateral_dir=settings.collateral_dir,
        pccs_url=settings.pccs_url,
        http=httpx.Client(timeout=30.0),
        clock=clock,
    )
    if settings.trust_simulated_root is not None:
        trust = trust.with_simulated_root(settings.trust_simulated_root)
    if settings.trust_simulated_gpu_root is not None:
        trust = trust.with_simulated_gpu_root(settings.trust_simulated_gpu_root)
    appraiser = trust.appraiser()
    state = VerifierState(
        settings=settings,
        appraiser=appraiser,
        policies=policies,
        signer=TokenSigner.load_or_create(settings.state_dir),
        clock=clock,
    )
    # Everything built so far lives as long as the service: keep the garbage collector from
    # re-scanning it on every collection (shorter pauses, a tighter latency tail).
    gc.collect()
    gc.freeze()
    return state


class BodyLimit:
    """Pure ASGI middleware: refuses request bodies over ``limit`` bytes (413) without reading
    more than that, declared or chunked. Logs ids, paths, statuses and timings, never bodies."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._limit):
            await self._refuse(send)
            return
        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._limit:
                    too_large = True
                    raise _BodyTooLargeError
            return message

        started = time.perf_counter()
        status = 0

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, limited_receive, tracking_send)
        except _BodyTooLargeError:
            if status == 0:
                await self._refuse(send)
        _log.info(
            "%s %s %d %.1fms",
            scope.get("method", "?"),
            scope.get("path", "?"),
            status or 413,
            (time.perf_counter() - started) * 1000,
        )

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body over {self._limit} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _BodyTooLargeError(Exception):
    pass


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
    app.add_middleware(BodyLimit, limit=state.settings.max_body_bytes)

    def attest_now(body: AttestationRequest, policy: Policy) -> Response:
        now = int(state.clock())
        verdict = state.appraiser.appraise(
            body.evidence, nonce=bytes.fromhex(body.nonce), policy=policy, at=now
        )
        return signed(verdict, policy, now)

    def signed(verdict: Verdict, policy: Policy, now: int) -> Response:
        claims = verdict.token_claims()
        token = state.signer.issue(
            claims, now=now, lifetime=policy.max_token_age, issuer=state.settings.issuer
        )
        return _token_response(token)

    # A plain Starlette route does the work: the body is read, decoded and validated once by
    # parse_attestation_request, and the answer goes out as prebuilt bytes, skipping FastAPI's
    # dependency solving, body parameter and response model machinery (together about 8% of
    # the CPU of a whole attestation). Errors raised here go through the app's exception
    # handlers like any route's. The FastAPI route after it, with the same path and method, is
    # never reached (the first matching route wins) and only documents the operation in the
    # OpenAPI schema, exactly as before.
    async def attest_fast(request: Request) -> Response:
        body = parse_attestation_request(await request.body(), request.headers.get("content-type"))
        policy = state.policies.get(body.policy)
        if policy is None:
            raise HTTPException(status_code=404, detail=f"unknown policy {body.policy!r}")
        return await attest_within_budget(body, policy)

    async def attest_within_budget(body: AttestationRequest, policy: Policy) -> Response:
        """Appraisal never runs on the event loop (it may fetch collateral, and its input is
        hostile), and its answer never waits longer than the budget: past it the client gets
        a signed ``appraisal_timeout`` verdict while the worker thread, abandoned, stops at
        the pipeline's next deadline check."""
        budget = state.settings.appraisal_timeout_s
        try:
            with anyio.fail_after(budget):
                return await anyio.to_thread.run_sync(
                    attest_now, body, policy, abandon_on_cancel=True
                )
        except TimeoutError:
            _log.warning("appraisal ran past its budget of %.1f s", budget)
            verdict = EvidenceAppraiser.refused(
                "appraisal_timeout",
                f"appraisal did not finish within {budget:g} s",
                nonce=bytes.fromhex(body.nonce),
                policy=policy,
            )
            return signed(verdict, policy, int(state.clock()))

    app.add_route("/v1/attestation", attest_fast, methods=["POST"], include_in_schema=False)

    @app.post("/v1/attestation", response_model=AttestationResponse)
    async def attest(body: AttestationRequest) -> AttestationResponse:  # pragma: no cover
        raise AssertionError("shadowed by attest_fast, which is registered first")

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


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` (one per worker process): settings from the
    ``CLLM_VERIFIER_*`` environment that ``cllm verifier serve`` exports."""
    return create_app(load_state(VerifierSettings()))  # type: ignore[call-arg]
