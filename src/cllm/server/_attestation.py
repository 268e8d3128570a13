"""``GET /v1/attestation/report?nonce=``: fresh evidence bound to the client's nonce and to the
keys this server answers with (docs/design.md §5). Nonces are admitted fairly per client and
answered in batches, one quote per batch (``_admission``; evidence version 2, docs/protocol.md).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from cllm.evidence import NONCE_SIZE
from cllm.server._admission import Admission, AdmissionRefusedError, AdmissionSettings, client_key
from cllm.server._batch_evidence import BatchEvidence
from cllm.server._gpu_evidence import gpu_collector
from cllm.server._runtime import Runtime

__all__ = ["attestation_router"]

_NONCE = re.compile(f"[0-9a-fA-F]{{{2 * NONCE_SIZE}}}")


def _invalid_nonce(value: str | None) -> Response:
    # The shape FastAPI gives a query parameter that fails its pattern (or is missing).
    if value is None:
        error = {"type": "missing", "loc": ["query", "nonce"], "msg": "Field required"}
    else:
        error = {
            "type": "string_pattern_mismatch",
            "loc": ["query", "nonce"],
            "msg": f"String should match pattern '^{_NONCE.pattern}$'",
        }
    return JSONResponse({"detail": [error]}, status_code=422)


def _refused(exc: AdmissionRefusedError) -> Response:
    body = json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode()
    return Response(
        body,
        status_code=exc.status,
        media_type="application/json",
        headers={"Retry-After": str(exc.retry_after), "Cache-Control": "no-store"},
    )


def attestation_router(
    runtime: Runtime, *, clock: Callable[[], float] = time.monotonic
) -> APIRouter:
    settings = runtime.settings
    quote_batch = BatchEvidence(
        runtime.tee.backend,
        tee=runtime.tee.evidence_tee,
        keys=runtime.keys.binding(bytes(NONCE_SIZE)),
        events=runtime.events,
        collateral=runtime.collateral,
        gpu=gpu_collector(runtime.gpu, clock=time.time) if runtime.gpu is not None else None,
    )
    admission = Admission(
        quote_batch,
        AdmissionSettings(
            batch_max=settings.attest_batch_max,
            batch_wait=settings.attest_batch_wait_ms / 1000,
            client_pending=settings.attest_client_pending,
            queue_max=settings.attest_queue_max,
            share_wait=settings.attest_share_wait_ms / 1000,
        ),
        clock=clock,
    )
    proxy_header = (settings.trusted_proxy_header or "").lower() or None
    router = APIRouter()

    # A plain route does the work (no dependency solving or response model: this is the
    # server's busiest route under load, refusals included); the FastAPI route below it only
    # documents the operation in the OpenAPI schema.
    async def report_fast(request: Request) -> Response:
        query: bytes = request.scope.get("query_string", b"")
        if len(query) == 6 + 2 * NONCE_SIZE and query.startswith(b"nonce="):
            values = [query[6:].decode("latin-1")]  # the common case, without parsing
        else:
            values = request.query_params.getlist("nonce")
        if len(values) != 1 or not _NONCE.fullmatch(values[0]):
            return _invalid_nonce(values[0] if values else None)
        peer = request.client.host if request.client else None
        client = client_key(peer, request.headers.get(proxy_header) if proxy_header else None)
        try:
            body = await admission.evidence(bytes.fromhex(values[0]), client=client)
        except AdmissionRefusedError as exc:
            return _refused(exc)
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    router.add_route(
        "/v1/attestation/report", report_fast, methods=["GET"], include_in_schema=False
    )

    @router.get("/v1/attestation/report", tags=["attestation"])
    async def report(  # pragma: no cover - shadowed by report_fast, registered first
        nonce: str = Query(
            ...,
            description=f"{NONCE_SIZE} random bytes chosen by the client, as hex",
            pattern=f"^[0-9a-fA-F]{{{2 * NONCE_SIZE}}}$",
        ),
    ) -> JSONResponse:
        raise AssertionError("shadowed by report_fast")

    return router
