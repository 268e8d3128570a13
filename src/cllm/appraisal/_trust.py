"""One trust configuration, built once through named constructors, that produces the appraiser
(in the spirit of pyca's ``PolicyBuilder`` and sigstore's ``Verifier.production()``).

    trust = Trust.production(collateral_dir=..., pccs_url=..., http=..., clock=...)
    trust = trust.with_simulated_root(Path("root-ca.pem"))   # the operator's choice, logged
    appraiser = trust.appraiser()

Every anchor is named here: Intel's root (pinned in ``cllm.verify``), the simulation root only
when asked for, where collateral comes from. The verifier service, the SDK's ``LocalVerifier``
and ``cllm evidence check`` build theirs through this class only. Each ``with_*`` returns a new
configuration; nothing is weakened by leaving an argument out.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cllm.appraisal._appraise import EvidenceAppraiser
from cllm.appraisal._collateral_source import CollateralSource
from cllm.appraisal._gpu import GpuTrust, load_simulated_gpu_root
from cllm.gpu import GpuTrustRoots, OcspSource, RimSource
from cllm.tee import simulation_trust_root
from cllm.verify import (
    CollateralFetcher,
    QuoteVerifier,
    TrustRoot,
    default_collateral_url,
    intel_root,
)

__all__ = ["Trust"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Trust:
    """What an appraiser trusts and where it gets collateral. Build with ``production`` or
    ``offline``, then ``with_*``; ``appraiser()`` makes the appraiser (build it once: it owns
    the memos)."""

    intel_root: TrustRoot
    # The simulation root: None unless the operator trusts one (``with_simulated_root``).
    simulated_root: TrustRoot | None = None
    simulated_root_path: Path | None = None
    collateral_dir: Path | None = None  # offline QuoteCollateralV3 files
    pccs_url: str | None = None  # None: no PCCS (offline); see ``production``
    http: httpx.Client | None = field(default=None, compare=False)
    clock: Callable[[], float] = field(default=time.time, compare=False)
    # GPU trust (docs/gpu.md, "Verifiers"): NVIDIA's pinned roots always; a simulated GPU's
    # roots only when the operator trusts them (``with_simulated_gpu_root``); hardware RIMs and
    # OCSP answers beyond those the evidence carries from ``gpu_rims`` / ``gpu_ocsp``, else
    # from NVIDIA's services (``production``), never fetched (``offline``).
    simulated_gpu_root: GpuTrustRoots | None = None
    simulated_gpu_root_path: Path | None = None
    gpu_rims: RimSource | None = field(default=None, compare=False)
    gpu_ocsp: OcspSource | None = field(default=None, compare=False)
    gpu_fetch: bool = False

    @classmethod
    def production(
        cls,
        *,
        collateral_dir: Path | None = None,
        pccs_url: str | None = None,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Trust:
        """Intel's root; collateral from the evidence, ``collateral_dir`` and a PCCS
        (``pccs_url``, default the machine's configured PCCS, else Intel's PCS)."""
        return cls(
            intel_root=intel_root(),
            collateral_dir=collateral_dir,
            pccs_url=pccs_url or default_collateral_url(),
            http=http,
            clock=clock,
            gpu_fetch=True,
        )

    @classmethod
    def offline(
        cls, *, collateral_dir: Path | None = None, clock: Callable[[], float] = time.time
    ) -> Trust:
        """Intel's root; collateral only from the evidence and ``collateral_dir``, never
        fetched (``cllm evidence check``: one document, judged as it is)."""
        return cls(intel_root=intel_root(), collateral_dir=collateral_dir, clock=clock)

    def with_simulated_root(self, pem_path: Path) -> Trust:
        """Also trust simulated evidence under the simulation root at ``pem_path`` (never as
        hardware: such verdicts are at best ``warning``). The operator's explicit choice, and
        logged as such."""
        root = simulation_trust_root(pem_path)  # logs the choice, with the root's digest
        return dataclasses.replace(self, simulated_root=root, simulated_root_path=pem_path)

    def with_simulated_gpu_root(self, pem_path: Path) -> Trust:
        """Also trust a simulated GPU under the roots at ``pem_path`` (``cllm gpu
        simulated-root``: device root, then RIM root); never NVIDIA's, never above ``warning``
        (``simulated_gpu``). The operator's explicit choice, and logged as such."""
        roots = load_simulated_gpu_root(pem_path)
        return dataclasses.replace(self, simulated_gpu_root=roots, simulated_gpu_root_path=pem_path)

    def with_gpu_sources(
        self, *, rims: RimSource | None = None, ocsp: OcspSource | None = None
    ) -> Trust:
        """Hardware GPU RIMs and OCSP answers from these sources (air-gapped verifiers)."""
        return dataclasses.replace(self, gpu_rims=rims, gpu_ocsp=ocsp)

    def appraiser(self) -> EvidenceAppraiser:
        """The appraiser for this configuration, with its own memos."""
        fetcher = None
        if self.pccs_url is not None:
            fetcher = CollateralFetcher(
                base_url=self.pccs_url,
                client=self.http or httpx.Client(timeout=30.0),
                clock=self.clock,
            )
        simulated = None
        if self.simulated_root is not None:
            simulated = QuoteVerifier(trust_root=self.simulated_root)
        return EvidenceAppraiser(
            intel=QuoteVerifier(trust_root=self.intel_root),
            simulated=simulated,
            collateral=CollateralSource(offline_dir=self.collateral_dir, fetcher=fetcher),
            trust=self,
            gpu=GpuTrust(
                simulated=self.simulated_gpu_root,
                rims=self.gpu_rims,
                ocsp=self.gpu_ocsp,
                http=self.http,
                clock=self.clock,
                fetch=self.gpu_fetch,
            ),
        )
