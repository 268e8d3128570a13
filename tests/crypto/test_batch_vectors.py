"""Batched-evidence vectors: the committed tests/crypto/batch_vectors.json is exactly what the
generator produces, and everything in it checks (the browser checks the same file in
ui/test/batch.test.js)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from cllm import _batch_vectors
from cllm.errors import EvidenceError
from cllm.evidence import check_batch_binding, check_batch_proof, parse_evidence
from cllm.merkle import InclusionProof, root_from_proof

VECTORS_FILE = Path(__file__).with_name("batch_vectors.json")


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    return doc


def _proof(doc: dict[str, Any]) -> InclusionProof:
    return InclusionProof(
        root=bytes.fromhex(doc["root"]),
        tree_size=doc["tree_size"],
        leaf_index=doc["leaf_index"],
        path=tuple(bytes.fromhex(p) for p in doc["path"]),
    )


def test_committed_vectors_are_what_the_generator_produces() -> None:
    # Regenerate with: python -m cllm._batch_vectors tests/crypto/batch_vectors.json
    assert VECTORS_FILE.read_text(encoding="utf-8") == _batch_vectors.render()


def test_every_proof_leads_to_its_root(vectors: dict[str, Any]) -> None:
    for tree in vectors["trees"]:
        for nonce, proof in zip(tree["nonces"], tree["proofs"], strict=True):
            assert root_from_proof(bytes.fromhex(nonce), _proof(proof)).hex() == tree["root"]


def test_bad_proofs_fail_with_their_codes(vectors: dict[str, Any]) -> None:
    for bad in vectors["bad_proofs"]:
        with pytest.raises(EvidenceError) as caught:
            check_batch_proof(bytes.fromhex(bad["nonce"]), _proof(bad["proof"]))
        assert caught.value.code == bad["code"], bad["what"]


def test_the_binding_is_sha256_of_jcs_then_the_root(vectors: dict[str, Any]) -> None:
    binding = vectors["binding"]
    jcs = binding["batch_binding_jcs"].encode()
    assert hashlib.sha256(jcs).hexdigest() + binding["batch"]["root"] == binding["report_data"]
    head = base64.b64decode(binding["quote_head"])
    # The head is laid out as a real v4 TDX quote: the parser finds REPORTDATA where it is.
    assert head[568:632].hex() == binding["report_data"]
    evidence = parse_evidence(
        {
            "version": 2,
            "tee": "tdx",
            "quote": binding["quote_head"],
            "event_log": [],
            "ccel": None,
            "binding": binding["binding"],
            "batch": binding["batch"],
        }
    )
    check_batch_binding(bytes.fromhex(binding["report_data"]), evidence)
