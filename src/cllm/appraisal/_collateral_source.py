"""Where the verifier service gets collateral: the evidence itself, an offline directory of
QuoteCollateralV3 files, else a PCCS / Intel PCS (cached until each set's nextUpdate).

When the PCCS cannot be reached, the cached set keeps serving until it expires; after that the
verdict fails closed (``collateral_unavailable``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cllm.errors import CllmError, CollateralError
from cllm.quote import Quote
from cllm.verify import (
    Collateral,
    CollateralFetcher,
    collateral_key,
    load_collateral,
    parse_tcb_info,
)

__all__ = ["CollateralSource"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Indexed:
    tee: str  # "TDX" / "SGX"
    fmspc: str  # upper-case hex
    issued: int
    collateral: Collateral
    path: Path


class CollateralSource:
    def __init__(self, *, offline_dir: Path | None, fetcher: CollateralFetcher | None) -> None:
        self._fetcher = fetcher
        self._offline = self._index(offline_dir) if offline_dir is not None else []

    @staticmethod
    def _index(directory: Path) -> list[_Indexed]:
        entries = []
        for path in sorted(directory.glob("*.json")):
            try:
                collateral = load_collateral(path)
                info = parse_tcb_info(collateral.tcb_info)
            except CllmError as exc:
                _log.warning("skipping collateral file %s: %s", path, exc)
                continue
            entries.append(
                _Indexed(
                    tee=info.id,
                    fmspc=info.fmspc.upper(),
                    issued=int(info.issue_date.timestamp()),
                    collateral=collateral,
                    path=path,
                )
            )
        _log.info("indexed %d offline collateral sets in %s", len(entries), directory)
        return entries

    def for_quote(self, quote: Quote) -> Collateral:
        """The newest offline set for the quote's TEE and FMSPC, else a fetched one."""
        key = collateral_key(quote)
        tee, fmspc = key.tee.upper(), key.fmspc.hex().upper()
        matches = [e for e in self._offline if e.tee == tee and e.fmspc == fmspc]
        if matches:
            return max(matches, key=lambda entry: entry.issued).collateral
        if self._fetcher is None:
            raise CollateralError(
                f"no collateral for {tee} FMSPC {fmspc} offline, and no PCCS",
                code="collateral_unavailable",
            )
        try:
            return self._fetcher.fetch(tee=key.tee, fmspc=key.fmspc, ca=key.ca)
        except CollateralError as exc:
            raise CollateralError(
                f"collateral unavailable: {exc.message}", code="collateral_unavailable"
            ) from exc
