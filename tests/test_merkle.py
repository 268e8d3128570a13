"""RFC 9162 Merkle trees over client nonces: the tree and its proofs against the RFC's
recursive definitions, every proof of every tree size verifying, and every structural lie
(index, size, path length) refused before any hash is compared."""

from __future__ import annotations

import hashlib
import os

import pytest

from cllm.errors import EvidenceError
from cllm.merkle import (
    MAX_TREE_SIZE,
    InclusionProof,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_proof,
)


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _mth(leaves: list[bytes]) -> bytes:  # RFC 9162 2.1.1, literally
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = _split(len(leaves))
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _path(m: int, leaves: list[bytes]) -> list[bytes]:  # RFC 9162 2.1.3.1, literally
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


@pytest.mark.parametrize("size", [*range(1, 18), 31, 32, 33, 100])
def test_tree_and_proofs_are_rfc_9162s(size: int) -> None:
    leaves = [os.urandom(32) for _ in range(size)]
    tree = MerkleTree(leaves)
    assert tree.root == _mth(leaves)
    for index in range(size):
        proof = tree.proof(index)
        assert list(proof.path) == _path(index, leaves)
        assert root_from_proof(leaves[index], proof) == tree.root


def test_a_batch_of_one_has_an_empty_path() -> None:
    nonce = os.urandom(32)
    proof = MerkleTree([nonce]).proof(0)
    assert proof.path == ()
    assert proof.root == leaf_hash(nonce)


def test_leaves_and_nodes_are_domain_separated() -> None:
    a, b = os.urandom(32), os.urandom(32)
    # An interior node's preimage offered as a leaf does not hash to the node.
    assert leaf_hash(a + b) != node_hash(a, b)


def test_a_proof_names_no_other_nonce() -> None:
    leaves = [os.urandom(32) for _ in range(8)]
    proof = MerkleTree(leaves).proof(3)
    revealed = set(proof.path)
    assert not revealed & set(leaves)  # only hashes of them, never the nonces
    assert leaf_hash(leaves[2]) in revealed  # the sibling leaf, hashed


@pytest.mark.parametrize(
    ("size", "index", "path_len"),
    [
        (5, 5, 1),  # index outside the tree
        (5, 0, 1),  # index 0 of 5 needs 3 hashes
        (5, 4, 3),  # index 4 of 5 needs 1
        (1, 0, 1),  # a batch of one has none
        (4, 1, 3),
        (0, 0, 0),
        (MAX_TREE_SIZE + 1, 0, 21),
    ],
)
def test_index_size_and_path_that_do_not_fit_are_refused(
    size: int, index: int, path_len: int
) -> None:
    proof = InclusionProof(
        root=bytes(32), tree_size=size, leaf_index=index, path=(bytes(32),) * path_len
    )
    with pytest.raises(EvidenceError) as caught:
        root_from_proof(os.urandom(32), proof)
    assert caught.value.code == "batch_index_mismatch"


def test_an_index_swapped_within_the_same_shape_leads_elsewhere() -> None:
    leaves = [os.urandom(32) for _ in range(4)]
    tree = MerkleTree(leaves)
    proof = tree.proof(1)
    swapped = InclusionProof(proof.root, proof.tree_size, 0, proof.path)
    assert root_from_proof(leaves[1], swapped) != tree.root
