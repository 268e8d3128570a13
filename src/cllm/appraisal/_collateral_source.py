"""Where the verifier service gets collateral: the evidence itself, an offline directory of
QuoteCollateralV3 files, else a PCCS / Intel PCS (cached until each set's nextUpdate).

When the PCCS cannot be reached, the cached set keeps serving until it expires; after that the
verdict fails closed (``collateral_unavailable``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cllm.appraisal._freshness import freshest
from cllm.errors import CllmError, CollateralError
from cllm.quote import CertificationData, Quote
from cllm.verify import (
    Collateral,
    CollateralFetcher,
    CollateralKey,
    collateral_key,
    collateral_key_of,
    load_collateral,
    parse_crl,
    parse_tcb_info,
)

__all__ = ["CollateralSource"]

_log = logging.getLogger(__name__)


# After a failed fetch, evidence that carries its own collateral is judged with that for this
# long before the PCCS is asked again (evidence without collateral always asks).
_RETRY_AFTER_S: Final = 60.0
_MAX_FAILED: Final = 1024


@dataclass(frozen=True, slots=True)
class _Indexed:
    tee: str  # "TDX" / "SGX"
    fmspc: str  # upper-case hex
    ca: str | None  # "platform" / "processor", from the PCK CRL's issuer
    issued: int
    evaluation: int  # tcbEvaluationDataNumber
    collateral: Collateral
    path: Path


def _crl_ca(collateral: Collateral) -> str | None:
    issuer = parse_crl(collateral.pck_crl, "PCK CRL").issuer.rfc4514_string()
    if "Processor" in issuer:
        return "processor"
    if "Platform" in issuer:
        return "platform"
    return None


@functools.lru_cache(maxsize=256)
def _key_of(tee: bool, certification: CertificationData) -> CollateralKey:
    return collateral_key_of(certification, is_tdx=tee)


def _collateral_key(quote: Quote) -> CollateralKey:
    """``collateral_key`` memoised on the exact certification data (one platform sends the
    same PCK chain in every quote)."""
    return _key_of(quote.is_tdx, quote.signature_data.certification)


class CollateralSource:
    def __init__(
        self,
        *,
        offline_dir: Path | None,
        fetcher: CollateralFetcher | None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetcher = fetcher
        self._offline = self._index(offline_dir) if offline_dir is not None else []
        self._monotonic = monotonic
        self._failed: dict[CollateralKey, float] = {}  # key -> when fetching it last failed

    @staticmethod
    def _index(directory: Path) -> list[_Indexed]:
        entries = []
        for path in sorted(directory.glob("*.json")):
            try:
                collateral = load_collateral(path)
                info = parse_tcb_info(collateral.tcb_info)
                ca = _crl_ca(collateral)
            except CllmError as exc:
                _log.warning("skipping collateral file %s: %s", path, exc)
                continue
            entries.append(
                _Indexed(
                    tee=info.id,
                    fmspc=info.fmspc.upper(),
                    ca=ca,
                    issued=int(info.issue_date.timestamp()),
                    evaluation=info.tcb_evaluation_data_number,
                    collateral=collateral,
                    path=path,
                )
            )
        _log.info("indexed %d offline collateral sets in %s", len(entries), directory)
        return entries

    def _offline_for(self, key: CollateralKey) -> Collateral | None:
        """The newest offline set for the TEE, FMSPC and PCK CA, by (evaluation, issueDate)."""
        tee, fmspc = key.tee.upper(), key.fmspc.hex().upper()
        matches = [
            e for e in self._offline if e.tee == tee and e.fmspc == fmspc and e.ca in (None, key.ca)
        ]
        if not matches:
            return None
        matches.sort(key=lambda entry: (entry.evaluation, entry.issued))
        # Newest piece by piece across the files (a newer CRL may sit in an older set).
        own = matches[-1].collateral
        for entry in matches[:-1]:
            own = freshest(carried=entry.collateral, own=own)
        return own

    def own_for(self, quote: Quote, *, may_fetch: bool) -> Collateral | None:
        """The verifier's own newest set for the quote, to hold carried collateral against:
        offline, else (``may_fetch``: hardware evidence) from the PCCS. None when it has none;
        a failed fetch is not retried for ``_RETRY_AFTER_S``."""
        if not self._offline and (not may_fetch or self._fetcher is None):
            return None  # nothing to compare with: skip decoding the PCK certificate
        key = _collateral_key(quote)
        offline = self._offline_for(key)
        if offline is not None or not may_fetch or self._fetcher is None:
            return offline
        failed = self._failed.get(key)
        if failed is not None and self._monotonic() - failed < _RETRY_AFTER_S:
            return None
        try:
            collateral = self._fetcher.fetch(tee=key.tee, fmspc=key.fmspc, ca=key.ca)
        except CollateralError as exc:
            if len(self._failed) >= _MAX_FAILED:  # FMSPCs come from unverified quotes
                self._failed.clear()
            self._failed[key] = self._monotonic()
            _log.warning("no collateral of our own for %s: %s", key.fmspc.hex(), exc.message)
            return None
        self._failed.pop(key, None)
        return collateral

    def for_quote(self, quote: Quote) -> Collateral:
        """The newest offline set for the quote's TEE, FMSPC and PCK CA, else a fetched one."""
        key = collateral_key(quote)
        offline = self._offline_for(key)
        if offline is not None:
            return offline
        if self._fetcher is None:
            raise CollateralError(
                f"no collateral for {key.tee.upper()} FMSPC {key.fmspc.hex().upper()} "
                f"({key.ca} CA) offline, and no PCCS",
                code="collateral_unavailable",
            )
        try:
            return self._fetcher.fetch(tee=key.tee, fmspc=key.fmspc, ca=key.ca)
        except CollateralError as exc:
            raise CollateralError(
                f"collateral unavailable: {exc.message}", code="collateral_unavailable"
            ) from exc
