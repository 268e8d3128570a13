"""Fresh GPU evidence for each quote (docs/protocol.md, "GPU evidence").

After the boot gate, every batch of ``/v1/attestation/report`` nonces gets one GPU collection:
each GPU's SPDM nonce is ``gpu_nonce(anchor=batch root, keys_digest)``, its report and chain
go into the evidence's ``gpu`` field, and the binding the quote commits to carries the field's
digest. GPUs the gate found present but could not attest are stated (``unattested``, with the
reason) in every document, bound the same way; a collection that fails after the gate passed is
stated as ``unattested`` too (and logged), never left out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

from cllm.errors import GpuError
from cllm.gpu import GpuBackend, GpuCcState, GpuDocument, GpuReportEntry, gpu_nonce
from cllm.server._gpu import GpuGate

__all__ = ["GpuCollector", "gpu_collector"]

_log = logging.getLogger(__name__)

# Stapled OCSP answers (the simulated GPU's own responder) are re-made this often; verifiers
# accept answers without their nonce for days (OcspPolicy.max_age).
_OCSP_REFRESH_S: Final = 3600


class GpuCollector:
    """``(anchor, keys digest) -> gpu field``, called once per quote (thread-safe)."""

    def __init__(self, gate: GpuGate, *, clock: Callable[[], float]) -> None:
        self._gate = gate
        self._clock = clock
        self._lock = threading.Lock()
        self._ocsp: tuple[int, tuple[bytes, ...]] | None = None
        cc: GpuCcState | None = gate.cc
        self._cc = cc.mode if cc is not None else "off"
        self._multi = cc.multi_gpu_mode if cc is not None else "unknown"

    def _stapled(self, backend: GpuBackend) -> tuple[bytes, ...]:
        now = int(self._clock())
        with self._lock:
            if self._ocsp is None or now - self._ocsp[0] >= _OCSP_REFRESH_S:
                self._ocsp = (now, backend.ocsp_responses(now))
            return self._ocsp[1]

    def _document(
        self, status: str, reason: str | None, reports: tuple[GpuReportEntry, ...] = ()
    ) -> GpuDocument:
        gate = self._gate
        backend = gate.source
        attested = status == "attested"
        return GpuDocument(
            status="attested" if attested else "unattested",
            simulated=backend.simulated if backend is not None else False,
            reason=reason,
            cc=self._cc,
            multi_gpu_mode=self._multi,
            present=gate.devices,
            reports=reports,
            rims=gate.rim_documents if attested else (),
            ocsp=self._stapled(backend) if attested and backend is not None else (),
        )

    def __call__(self, anchor: bytes, keys_digest: bytes) -> Mapping[str, Any]:
        gate, backend = self._gate, self._gate.source
        if gate.status != "attested" or backend is None:
            return self._document("unattested", gate.error_code or "gpu_unavailable").to_json()
        nonce = gpu_nonce(anchor=anchor, keys_digest=keys_digest)
        try:
            collected = backend.collect(nonce)
        except GpuError as exc:
            _log.warning("GPU evidence for a quote failed: [%s] %s", exc.code, exc.message)
            return self._document("unattested", exc.code).to_json()
        if not collected:  # a backend that answers with nothing: stated, never an empty pass
            _log.warning("GPU evidence for a quote: the GPUs gave no report")
            return self._document("unattested", "gpu_unavailable").to_json()
        arch = {device.index: device.arch for device in gate.devices}
        reports = tuple(
            GpuReportEntry(
                index=item.index,
                arch=arch.get(item.index, "unknown"),
                report=item.report,
                chain_pem=item.chain_pem,
            )
            for item in collected
        )
        return self._document("attested", None, reports).to_json()


def gpu_collector(gate: GpuGate, *, clock: Callable[[], float]) -> GpuCollector | None:
    """The collector for the gate's outcome; None when the evidence carries no GPU field (GPUs
    off, or none present)."""
    if gate.status in ("off", "absent"):
        return None
    return GpuCollector(gate, clock=clock)
