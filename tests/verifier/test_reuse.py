"""Verifier reuse: many clients of one batch carry one quote. Its DCAP work is done once while
the collateral stays valid, and each client's own nonce, proof, binding and policy are still
checked: a forged member of a batch whose quote was already verified is still rejected."""

from __future__ import annotations

import base64
import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from cllm.evidence import Binding, build_batch_evidence
from cllm.measure import Event, EventLog
from cllm.policy import default_policy
from cllm.tee import SimulatedTdBackend, load_simulated_world, rtmr3_extender
from cllm.verifier import CollateralSource, EvidenceAppraiser
from cllm.verify import QuoteVerifier

NOW = 1_790_000_000


class CountingVerifier(QuoteVerifier):
    calls = 0

    def verify(self, *args: Any, **kwargs: Any) -> Any:
        type(self).calls += 1
        return super().verify(*args, **kwargs)


@pytest.fixture
def setting(tmp_path: Path) -> tuple[EvidenceAppraiser, list[dict[str, Any]]]:
    world = load_simulated_world(tmp_path, clock=lambda: float(NOW))
    backend = SimulatedTdBackend(world)
    log = EventLog(rtmr3_extender(backend))
    log.append(Event(rtmr=3, type="cllm.config", name="c", digest=bytes(48)))
    keys = Binding.with_throwaway_keys(bytes(32))
    docs = build_batch_evidence(
        backend,
        tee="simulated-tdx",
        bindings=[Binding(os.urandom(32), keys.signing_key, keys.hpke_key, None) for _ in range(4)],
        events=log.events(),
        collateral=world.collateral(),
    )
    CountingVerifier.calls = 0
    appraiser = EvidenceAppraiser(
        intel=QuoteVerifier(trust_root=world.dcap.trust_root()),  # unused: simulated evidence
        simulated=CountingVerifier(trust_root=world.dcap.trust_root()),
        collateral=CollateralSource(offline_dir=None, fetcher=None),
    )
    return appraiser, [json.loads(json.dumps(d.to_json())) for d in docs]


def _appraise(appraiser: EvidenceAppraiser, doc: dict[str, Any], nonce: bytes, at: int) -> Any:
    return appraiser.appraise(doc, nonce=nonce, policy=default_policy(), at=at)


def _nonce(doc: dict[str, Any]) -> bytes:
    return bytes.fromhex(doc["binding"]["nonce"])


def test_one_batch_one_dcap_run_and_every_member_checked(
    setting: tuple[EvidenceAppraiser, list[dict[str, Any]]],
) -> None:
    appraiser, docs = setting
    verdicts = [_appraise(appraiser, doc, _nonce(doc), NOW) for doc in docs]
    assert [v.status for v in verdicts] == ["warning"] * 4
    assert CountingVerifier.calls == 1
    # A forged member after the quote was remembered: still rejected, by its own checks.
    forged = copy.deepcopy(docs[0])
    forged["batch"] = docs[1]["batch"]
    verdict = _appraise(appraiser, forged, _nonce(forged), NOW)
    assert verdict.status == "contraindicated"
    assert "batch_proof_invalid" in [r.code for r in verdict.reasons]
    # Another member's document for our nonce: the nonce check still runs.
    verdict = _appraise(appraiser, docs[1], _nonce(docs[0]), NOW)
    assert "nonce_mismatch" in [r.code for r in verdict.reasons]


def test_reuse_only_within_the_validity_window(
    setting: tuple[EvidenceAppraiser, list[dict[str, Any]]],
) -> None:
    appraiser, docs = setting
    first = _appraise(appraiser, docs[0], _nonce(docs[0]), NOW)
    expires = first.claims["tcb"]["collateral_expires"]
    assert expires is not None
    _appraise(appraiser, docs[1], _nonce(docs[1]), expires)  # the last valid second: reused
    assert CountingVerifier.calls == 1
    late = _appraise(appraiser, docs[2], _nonce(docs[2]), expires + 1)  # runs again, and fails
    assert CountingVerifier.calls == 2
    assert late.status == "contraindicated"
    assert "expired" in [r.code for r in late.reasons]
    _appraise(appraiser, docs[3], _nonce(docs[3]), NOW - 1)  # before it was computed: runs again
    assert CountingVerifier.calls == 3


def test_other_quote_bytes_are_verified_afresh(
    setting: tuple[EvidenceAppraiser, list[dict[str, Any]]],
) -> None:
    appraiser, docs = setting
    _appraise(appraiser, docs[0], _nonce(docs[0]), NOW)
    other = copy.deepcopy(docs[0])
    other["collateral"] = {**other["collateral"]}  # equal collateral: still the same entry
    _appraise(appraiser, other, _nonce(other), NOW)
    assert CountingVerifier.calls == 1
    raw = bytearray(base64.b64decode(other["quote"]))
    raw[184] ^= 1  # one byte of MRTD changed: the quote signature no longer holds
    other["quote"] = base64.b64encode(bytes(raw)).decode()
    verdict = _appraise(appraiser, other, _nonce(other), NOW)
    assert CountingVerifier.calls == 2
    assert verdict.status == "contraindicated"


def test_failures_are_not_remembered(
    setting: tuple[EvidenceAppraiser, list[dict[str, Any]]],
) -> None:
    appraiser, docs = setting
    far = int(time.time()) + 100 * 365 * 86400
    for _ in range(2):
        assert _appraise(appraiser, docs[0], _nonce(docs[0]), far).status == "contraindicated"
    assert CountingVerifier.calls == 2
