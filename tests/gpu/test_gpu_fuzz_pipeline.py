"""The whole pipeline on mutated inputs (report, chain, RIMs, OCSP answers, at once): every
run ends in a verdict with a typed code, never ``internal_error``, never a pass for changed
signed bytes. Deterministic (fixed seed); size scaled by $CLLM_FUZZ_SCALE."""

from __future__ import annotations

import os
import random

import pytest
from gpu_pki import DRIVER, NONCE, NOW, pki

from cllm.gpu import GpuVerifier, OcspMode, OcspPolicy, RimFiles, RimKind

ROUNDS = int(1500 * float(os.environ.get("CLLM_FUZZ_SCALE", "1")))


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(4)
        if kind == 0 and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            del out[rng.randrange(len(out)) :]
        elif kind == 2 and out:
            at = rng.randrange(len(out))
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        else:
            out[rng.randrange(len(out) + 1) :] = out[-rng.randint(1, 40) :]
    return bytes(out)


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_pipeline_on_mutated_inputs() -> None:
    p = pki()
    report = p.report()
    chain = p.chain_pem
    driver = p.rim(DRIVER, range(21, 41))
    vbios = p.rim("96.00.5E.00.04", range(0, 13))
    answers = tuple(p.ocsp(p.device, i) for i in (1, 2, 3))
    answers += tuple(p.ocsp(p.rim_chain, i) for i in (0, 1, 2))
    verifier = GpuVerifier(roots=p.roots)
    rng = random.Random(17)
    codes: set[str] = set()
    for _ in range(ROUNDS):
        target = rng.randrange(4)
        parts = [report, chain, driver, vbios]
        parts[target] = _mutate(rng, parts[target])
        supplied = list(answers)
        if rng.random() < 0.2:
            i = rng.randrange(len(supplied))
            supplied[i] = _mutate(rng, supplied[i])
        result = verifier.verify(
            parts[0],
            chain=parts[1],
            expected_nonce=NONCE,
            rims=RimFiles((parts[2], parts[3])),
            rims_required=(RimKind.DRIVER, RimKind.VBIOS),
            ocsp=OcspPolicy(OcspMode.REQUIRE, responses=tuple(supplied)),
            at=NOW,
        )
        if result.ok:
            # Only changes outside what is signed may pass (PEM text around the certificates).
            assert target == 1 and parts[1] != chain
            continue
        assert result.error is not None
        assert result.error.code != "internal_error", result.error
        codes.add(result.error.code)
    assert len(codes) >= 8  # the mutations reach many different checks
