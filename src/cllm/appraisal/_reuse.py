"""Verifier reuse: the clients of one batch all carry the same quote, so its DCAP work is done
once and remembered, while each client's own proof, binding and policy are still checked.

The memo sits around ``QuoteVerifier.verify`` and is keyed on exactly what that result depends
on: the verifier (its trust root), the exact quote bytes and the collateral set (by value). A
remembered result is reused only while it would still come out the same: for evaluation times
from the one it was computed at up to the first expiry among the collateral and certificates it
used (``collateral_expires``). Before or after that window, or for any other byte, DCAP runs
again. Only successful results are kept: a failure is recomputed (and stays a failure).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from cllm.quote import Quote
from cllm.verify import Collateral, QuoteVerifier, VerificationResult

__all__ = ["DcapReuse"]

_ENTRIES: Final = 256


@dataclass(frozen=True, slots=True)
class _Kept:
    result: VerificationResult
    first_at: int
    until: int  # collateral_expires: valid through this second


class DcapReuse:
    def __init__(self, *, maxsize: int = _ENTRIES) -> None:
        self._maxsize = maxsize
        self._memo: OrderedDict[tuple[int, bytes, Collateral], _Kept] = OrderedDict()
        self._verifiers: dict[int, QuoteVerifier] = {}  # keeps ids in keys from being reused
        self._lock = threading.Lock()
        self.hits = 0

    def verify(
        self,
        verifier: QuoteVerifier,
        *,
        quote_bytes: bytes,
        quote: Quote,
        collateral: Collateral,
        at: int,
    ) -> VerificationResult:
        key = (id(verifier), quote_bytes, collateral)
        with self._lock:
            kept = self._memo.get(key)
            if kept is not None and kept.first_at <= at <= kept.until:
                self._memo.move_to_end(key)
                self.hits += 1
                return kept.result
        result = verifier.verify(quote, collateral, at=at)
        if result.ok and result.collateral_expires is not None:
            with self._lock:
                self._verifiers[id(verifier)] = verifier
                self._memo[key] = _Kept(result, at, result.collateral_expires)
                self._memo.move_to_end(key)
                while len(self._memo) > self._maxsize:
                    self._memo.popitem(last=False)
        return result
