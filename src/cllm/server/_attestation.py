"""``GET /v1/attestation/report?nonce=``: fresh evidence bound to the client's nonce and to the
keys this server answers with (docs/design.md §5)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from cllm.errors import CllmError
from cllm.evidence import NONCE_SIZE
from cllm.server._runtime import Runtime

__all__ = ["TokenBucket", "attestation_router"]


class TokenBucket:
    """``rate`` requests per second on average, ``burst`` at once; shared by all clients,
    because what it protects (the TD's quoting) is shared."""

    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0 when a request may go ahead, else the seconds until one may."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self._rate


def attestation_router(
    runtime: Runtime, *, clock: Callable[[], float] = time.monotonic
) -> APIRouter:
    router = APIRouter()
    bucket = TokenBucket(
        rate=runtime.settings.report_rate, burst=runtime.settings.report_burst, clock=clock
    )

    @router.get("/v1/attestation/report", tags=["attestation"])
    async def report(
        nonce: str = Query(
            ...,
            description=f"{NONCE_SIZE} random bytes chosen by the client, as hex",
            pattern=f"^[0-9a-fA-F]{{{2 * NONCE_SIZE}}}$",
        ),
    ) -> JSONResponse:
        wait = bucket.take()
        if wait > 0:
            return JSONResponse(
                {"error": {"code": "rate_limited", "message": "too many attestation requests"}},
                status_code=429,
                headers={"Retry-After": str(math.ceil(wait))},
            )
        try:
            doc = await runtime.evidence(bytes.fromhex(nonce))
        except CllmError as exc:
            return JSONResponse(
                {"error": {"code": exc.code, "message": exc.message}}, status_code=503
            )
        return JSONResponse(doc, headers={"Cache-Control": "no-store"})

    return router
