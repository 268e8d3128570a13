"""Evidence version 2: one quote for a batch of nonces. Each member's document checks out for
its own nonce only, with the batch proof as its own named step; the server's prebuilt response
bytes are exactly the documents ``build_batch_evidence`` makes; versions and proofs must agree."""

from __future__ import annotations

import copy
import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from cllm.errors import EvidenceError
from cllm.evidence import (
    Binding,
    build_batch_evidence,
    check_batch,
    check_evidence,
    parse_evidence,
)
from cllm.measure import Event, EventLog
from cllm.quote import parse_quote
from cllm.server._batch_evidence import BatchEvidence
from cllm.tee import SimulatedTdBackend, load_simulated_world, rtmr3_extender

NOW = 1_790_000_000


@pytest.fixture
def td(tmp_path: Path) -> tuple[SimulatedTdBackend, tuple[Event, ...]]:
    backend = SimulatedTdBackend(load_simulated_world(tmp_path, clock=lambda: float(NOW)))
    log = EventLog(rtmr3_extender(backend))
    for kind in ("package", "model", "config"):
        log.append(Event(rtmr=3, type=f"cllm.{kind}", name=kind, digest=secrets.token_bytes(48)))
    return backend, log.events()


def _batch(td: tuple[SimulatedTdBackend, tuple[Event, ...]], n: int) -> list[dict[str, Any]]:
    backend, events = td
    keys = Binding.with_throwaway_keys(bytes(32))
    bindings = [
        Binding(os.urandom(32), keys.signing_key, keys.hpke_key, keys.tls_spki_sha256)
        for _ in range(n)
    ]
    docs = build_batch_evidence(
        backend,
        tee="simulated-tdx",
        bindings=bindings,
        events=events,
        collateral=backend.world.collateral(),
    )
    return [json.loads(json.dumps(doc.to_json())) for doc in docs]


def _code(doc: dict[str, Any], nonce: bytes) -> str | None:
    result = check_evidence(parse_evidence(doc), expected_nonce=nonce)
    return None if result.ok else result.error.code if result.error else "?"


@pytest.mark.parametrize("size", [1, 2, 5])
def test_every_member_checks_out_for_its_own_nonce_only(
    td: tuple[SimulatedTdBackend, tuple[Event, ...]], size: int
) -> None:
    docs = _batch(td, size)
    assert len({doc["quote"] for doc in docs}) == 1  # one quote for all
    for doc in docs:
        nonce = bytes.fromhex(doc["binding"]["nonce"])
        result = check_evidence(parse_evidence(doc), expected_nonce=nonce)
        assert result.ok, result.error
        assert [s.name for s in result.steps] == [
            "quote",
            "tee_claim",
            "binding",
            "nonce",
            "batch_proof",
            "event_log",
            "ccel",
        ]
        assert doc["version"] == 2
        assert (doc["batch"]["path"] == []) == (size == 1)
        # REPORTDATA's second half is the batch root, readable from the quote itself.
        quote = parse_quote(parse_evidence(doc).quote)
        assert quote.td_report.report_data[32:].hex() == doc["batch"]["root"]
    if size > 1:
        assert _code(docs[0], bytes.fromhex(docs[1]["binding"]["nonce"])) == "nonce_mismatch"


def test_the_server_bytes_are_the_documents(
    td: tuple[SimulatedTdBackend, tuple[Event, ...]],
) -> None:
    backend, events = td
    keys = Binding.with_throwaway_keys(bytes(32))
    served = BatchEvidence(
        backend,
        tee="simulated-tdx",
        keys=keys,
        events=events,
        collateral=backend.world.collateral(),
    )
    nonces = [os.urandom(32) for _ in range(3)]
    for nonce, body in zip(nonces, served(nonces), strict=True):
        evidence = parse_evidence(body)
        assert json.loads(body) == json.loads(json.dumps(evidence.to_json()))
        assert evidence.binding.nonce == nonce
        assert evidence.binding.hpke_key == keys.hpke_key
        assert check_evidence(evidence, expected_nonce=nonce).ok


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda d: d["batch"]["path"].__setitem__(0, "00" * 32), "batch_proof_invalid"),
        (lambda d: d["batch"].__setitem__("leaf_index", 7), "batch_index_mismatch"),
        (lambda d: d["batch"].__setitem__("tree_size", 9), "batch_index_mismatch"),
        (lambda d: d["batch"].__setitem__("root", "11" * 32), "batch_root_unbound"),
        (lambda d: d["binding"].__setitem__("tls_spki_sha256", "22" * 32), "binding_mismatch"),
    ],
)
def test_each_change_to_the_batch_has_its_code(
    td: tuple[SimulatedTdBackend, tuple[Event, ...]], edit: Any, code: str
) -> None:
    doc = copy.deepcopy(_batch(td, 4)[1])
    nonce = bytes.fromhex(doc["binding"]["nonce"])
    edit(doc)
    assert _code(doc, nonce) == code
    with pytest.raises(EvidenceError) as caught:  # the SDK's own check agrees
        check_batch(parse_evidence(doc), expected_nonce=nonce)
    assert caught.value.code == code


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.pop("batch"),  # version 2 without its proof
        lambda d: d.__setitem__("version", 1),  # version 1 with a proof
        lambda d: d.__setitem__("version", 3),
        lambda d: d["batch"]["path"].append("AB" * 32),  # not lowercase hex
        lambda d: d["batch"]["path"].__setitem__(0, "00 " * 32),
        lambda d: d["batch"].__setitem__("leaf_index", "1"),  # strict integers
        lambda d: d["batch"].__setitem__("tree_size", 0),
        lambda d: d["batch"].__setitem__("path", ["00" * 32] * 21),
        lambda d: d["batch"].__setitem__("extra", 1),
    ],
)
def test_malformed_batches_are_refused(
    td: tuple[SimulatedTdBackend, tuple[Event, ...]], edit: Any
) -> None:
    doc = copy.deepcopy(_batch(td, 3)[0])
    edit(doc)
    with pytest.raises(EvidenceError) as caught:
        parse_evidence(doc)
    assert caught.value.code == "evidence_malformed"


def test_one_batch_one_set_of_keys(td: tuple[SimulatedTdBackend, tuple[Event, ...]]) -> None:
    backend, events = td
    with pytest.raises(ValueError, match="keys"):
        build_batch_evidence(
            backend,
            tee="simulated-tdx",
            bindings=[Binding.with_throwaway_keys(os.urandom(32)) for _ in range(2)],
            events=events,
            collateral=None,
        )
