"""Errors the proxy answers itself, in the shape of the API the client spoke: OpenAI's
``{"error": {"message", "type", "code"}}`` on ``/v1/...``, Ollama's ``{"error": "..."}`` on
``/api/...``; both carry ``code`` and the verifier's ``reasons`` so a person can see why."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.responses import Response

from cllm.errors import AttestationError, CllmError
from cllm.policy import Reason

__all__ = ["api_error", "error_record", "error_response", "reasons_of"]


def reasons_of(error: CllmError) -> tuple[Reason, ...]:
    """The verifier's reasons behind an ``AttestationError`` (empty for other errors)."""
    if isinstance(error, AttestationError):
        verification = error.verification
        reasons = getattr(verification, "reasons", ())
        return tuple(r for r in reasons if isinstance(r, Reason))
    return ()


def api_error(path: str, *, code: str, message: str, reasons: Sequence[Reason] = ()) -> Any:
    listed = [reason.to_json() for reason in reasons]
    if path.startswith("/api/"):
        return {"error": message, "code": code, "reasons": listed}
    kind = "attestation_error" if code.startswith(("attestation", "tls_")) else "proxy_error"
    return {"error": {"message": message, "type": kind, "code": code, "reasons": listed}}


def error_response(path: str, error: CllmError, *, status_code: int) -> Response:
    reasons = reasons_of(error)
    message = error.message
    if reasons:
        message += " (" + "; ".join(f"{r.code}: {r.message}" for r in reasons) + ")"
    doc = api_error(path, code=error.code, message=message, reasons=reasons)
    return Response(
        json.dumps(doc).encode(),
        status_code=status_code,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def error_record(path: str, error: CllmError, *, sse: bool) -> bytes:
    """An error in the middle of a streamed answer: one more SSE event or NDJSON line."""
    doc = api_error(path, code=error.code, message=error.message, reasons=reasons_of(error))
    line = json.dumps(doc).encode()
    return b"data: " + line + b"\n\n" if sse else line + b"\n"
