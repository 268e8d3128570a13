"""Batched evidence (version 2) under attack. A man in the middle between the client and a real
server, which quotes slowly (as real hardware does) and so answers concurrent clients with one
quote per batch, tries what a hostile network or host would with the batch proofs: another
client's proof, a changed sibling, a wrong leaf index, a root of its own, a quote from another
batch, an earlier batch's evidence. Each is rejected, with its own reason code, by the local
and the remote verifier alike. And one client flooding the admission queue is refused (429,
Retry-After) while another client's attestation still succeeds."""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from cllm.client import LocalVerifier, RemoteVerifier, attest
from cllm.merkle import MerkleTree
from serving import ServeProcess, VerifierProcess, start_serve

Edit = Callable[[bytes, dict[str, Any]], dict[str, Any]]


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory, simulated_root: Path) -> Iterator[ServeProcess]:
    """A server whose quotes take 150 ms (so concurrent requests meet in one batch even on a
    busy machine), sharing the simulated root of the session's server (same state directory
    seed), so the session's verifier trusts it. Default shares: 4 pending per client; a
    request over its share waits 100 ms for it, then 429."""
    root = tmp_path_factory.mktemp("slow-quotes")
    state = simulated_root.parent.parent
    served = start_serve(
        ["--attest-batch-wait-ms", "50"],
        state_dir=state,
        log_path=root / "serve.log",
        env={"CLLM_SIM_QUOTE_MS": "150", "CLLM_SERVE_ATTEST_SHARE_WAIT_MS": "100"},
    )
    yield served
    served.stop()


@pytest.fixture(params=["local", "remote"])
def trusting(
    request: pytest.FixtureRequest, simulated_root: Path, verifier: VerifierProcess
) -> LocalVerifier | RemoteVerifier:
    if request.param == "local":
        return LocalVerifier(trust_simulated_root=simulated_root)
    return RemoteVerifier(verifier.url)


def _fetch(server: ServeProcess, nonces: list[bytes]) -> list[dict[str, Any]]:
    """The documents for ``nonces``, asked for at the same moment by as many clients (each
    from its own loopback address), so usually answered by one batch."""

    def one(index: int) -> dict[str, Any]:
        transport = httpx.HTTPTransport(local_address=f"127.0.3.{index + 1}")
        with httpx.Client(transport=transport, timeout=60) as http:
            response = http.get(
                f"{server.url}/v1/attestation/report", params={"nonce": nonces[index].hex()}
            )
        assert response.status_code == 200, response.text
        doc: dict[str, Any] = response.json()
        return doc

    with ThreadPoolExecutor(len(nonces)) as pool:
        return list(pool.map(one, range(len(nonces))))


def _batch_with(server: ServeProcess, nonce: bytes, others: int = 4) -> list[dict[str, Any]]:
    """Documents for ``nonce`` and ``others`` fresh nonces, all from one batch of at least 3."""
    for _ in range(20):
        docs = _fetch(server, [nonce, *(os.urandom(32) for _ in range(others))])
        roots = {doc["batch"]["root"] for doc in docs}
        if len(roots) == 1 and docs[0]["batch"]["tree_size"] >= 3:
            return docs
    raise AssertionError("the server never put five concurrent nonces into one batch")


class Mitm(httpx.BaseTransport):
    """Answers the client's evidence request with ``edit(nonce, its own batch's documents)``."""

    def __init__(self, server: ServeProcess, edit: Callable[[bytes, list[dict[str, Any]]], Any]):
        self._server = server
        self._edit = edit
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/attestation/report":
            response = self._inner.handle_request(request)
            response.read()
            return response
        nonce = bytes.fromhex(request.url.params["nonce"])
        return httpx.Response(200, json=self._edit(nonce, _batch_with(self._server, nonce)))


def _attack(
    server: ServeProcess,
    verifier: LocalVerifier | RemoteVerifier,
    edit: Callable[[bytes, list[dict[str, Any]]], Any],
) -> list[str]:
    with httpx.Client(base_url=server.url, transport=Mitm(server, edit), timeout=60) as http:
        result = attest(http, verifier)
    assert result.status == "contraindicated"
    assert result.keys is None
    return [reason.code for reason in result.reasons]


def test_honest_batches_verify_for_every_member(
    slow: ServeProcess, trusting: LocalVerifier | RemoteVerifier
) -> None:
    with httpx.Client(base_url=slow.url, transport=Mitm(slow, lambda _, d: d[0]), timeout=60) as h:
        result = attest(h, trusting)
    assert result.status == "warning"  # simulated: never better
    assert result.keys is not None


def test_a_proof_for_another_nonce_is_rejected(
    slow: ServeProcess, trusting: LocalVerifier | RemoteVerifier
) -> None:
    def theirs(_: bytes, docs: list[dict[str, Any]]) -> dict[str, Any]:
        return docs[1]  # another client's whole document: its proof is for its nonce

    assert "nonce_mismatch" in _attack(slow, trusting, theirs)


def test_another_leafs_proof_passed_off_as_ours_is_rejected(
    slow: ServeProcess, trusting: LocalVerifier | RemoteVerifier
) -> None:
    def passed_off(_: bytes, docs: list[dict[str, Any]]) -> dict[str, Any]:
        doc = copy.deepcopy(docs[0])
        doc["batch"] = docs[1]["batch"]
        return doc

    assert "batch_proof_invalid" in _attack(slow, trusting, passed_off)


def test_a_proof_with_one_sibling_changed_is_rejected(
    slow: ServeProcess, trusting: LocalVerifier | RemoteVerifier
) -> None:
    def sibling(_: bytes, docs: list[dict[str, Any]]) -> dict[str, Any]:
        doc = copy.deepcopy(docs[0])
        last = doc["batch"]["path"][-1]
        doc["batch"]["path"][-1] = ("1" if last[0] == "0" else "0") + last[1:]
        return doc

    assert "batch_proof_invalid" in _attack(slow, trusting, sibling)


def test_a_leaf_index_that_does_not_match_the_path_is_rejected(
    slow: ServeProcess, trusting: LocalVerifier | RemoteVerifier
) -> None:
    def index(_: bytes, docs: list[dict[str, Any]]) -> dict[str, Any]:
        doc = copy.deepcopy(docs[0])
        doc["batch"]["leaf_index"] = doc["batch"]["tree_size"]  # no such leaf
        return doc

    assert "batch_index_mismatch" in _attack(slow, trusting, index)


def test_a_root_the_quote_does_not_bind_is_rejected(
    slow: ServeProcess, trusting: LocalVerifier | RemoteVerifier
) -> None:
    """The attacker's own tree, with our nonce in it: a perfect proof to a root never quoted."""

    def own_root(nonce: bytes, docs: list[dict[str, Any]]) -> dict[str, Any]:
        doc = copy.deepcopy(docs[0])
        tree = MerkleTree([os.urandom(32), nonce, os.urandom(32)])
        doc["batch"] = tree.proof(1).to_json()
        return doc

    assert "batch_root_unbound" in _attack(slow, trusting, own_root)


def test_a_batch_mixing_two_quotes_is_rejected(
    slow: ServeProcess, trusting: LocalVerifier | RemoteVerifier
) -> None:
    """Our batch's binding and proof, with the quote of another batch (same TD, same keys)."""
    earlier = _fetch(slow, [os.urandom(32)])[0]

    def mixed(_: bytes, docs: list[dict[str, Any]]) -> dict[str, Any]:
        assert earlier["quote"] != docs[0]["quote"]
        return {**docs[0], "quote": earlier["quote"]}

    assert "batch_root_unbound" in _attack(slow, trusting, mixed)


def test_replayed_evidence_from_an_earlier_batch_is_rejected(
    slow: ServeProcess, trusting: LocalVerifier | RemoteVerifier
) -> None:
    earlier = _fetch(slow, [os.urandom(32)])[0]
    assert "nonce_mismatch" in _attack(slow, trusting, lambda _n, _d: earlier)


def _flood(url: str, stop: threading.Event, statuses: list[tuple[int, str | None, str]]) -> None:
    with httpx.Client(timeout=60) as http:
        while not stop.is_set():
            response = http.get(url, params={"nonce": os.urandom(32).hex()})
            code = (
                response.json().get("error", {}).get("code", "")
                if response.status_code != 200
                else ""
            )
            statuses.append((response.status_code, response.headers.get("retry-after"), code))


def test_a_client_flooding_the_admission_queue_is_refused_and_others_still_attest(
    slow: ServeProcess, trusting: LocalVerifier | RemoteVerifier
) -> None:
    """The flooder (127.0.0.1, 32 connections at full speed, 8 times its share) is told 429
    with Retry-After, alone: a client from another address attests meanwhile, every time."""
    stop = threading.Event()
    statuses: list[tuple[int, str | None, str]] = []
    url = f"{slow.url}/v1/attestation/report"
    flooders = [threading.Thread(target=_flood, args=(url, stop, statuses)) for _ in range(32)]
    for thread in flooders:
        thread.start()
    try:
        time.sleep(0.5)
        other = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=slow.url, transport=other, timeout=60) as http:
            results = [attest(http, trusting) for _ in range(3)]
    finally:
        stop.set()
        for thread in flooders:
            thread.join()
    assert [r.status for r in results] == ["warning"] * 3, [r.reasons for r in results]
    refused = [s for s in statuses if s[0] == 429]
    assert refused, "the flood was never refused"
    assert all(code == "rate_limited" for _, _, code in refused)
    assert all(after is not None and after.isdigit() and int(after) >= 1 for _, after, _ in refused)
    assert {s[0] for s in statuses} <= {200, 429}  # the flooder's share is still served
    assert any(s[0] == 200 for s in statuses)
