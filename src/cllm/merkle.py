"""Merkle trees over client nonces (RFC 9162 section 2.1), for batched evidence.

One quote answers a batch of clients: its REPORTDATA commits to the root of a Merkle tree whose
leaves are the clients' nonces, and each client gets an inclusion proof (leaf index, tree size,
audit path) for its own nonce. Hashing is RFC 9162's, with domain separation between leaves and
interior nodes, so no leaf can pass for a node (no second-preimage trick through the tree shape):

    leaf hash = SHA-256(0x00 || nonce)
    node hash = SHA-256(0x01 || left || right)

The tree is RFC 9162's left-balanced one (built bottom-up, an unpaired last node is promoted).
A proof reveals only sibling *hashes*: a client learns no other client's nonce from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cllm.errors import EvidenceError

__all__ = [
    "HASH_SIZE",
    "MAX_PATH",
    "MAX_TREE_SIZE",
    "InclusionProof",
    "MerkleTree",
    "leaf_hash",
    "node_hash",
    "root_from_proof",
]

HASH_SIZE: Final = 32
MAX_TREE_SIZE: Final = 1 << 20  # far above any batch; bounds what a verifier will walk
MAX_PATH: Final = 20  # ceil(log2(MAX_TREE_SIZE))
_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(_LEAF + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """That leaf ``leaf_index`` of a tree of ``tree_size`` leaves, with audit ``path`` (sibling
    hashes from the leaf up), belongs under ``root``."""

    root: bytes
    tree_size: int
    leaf_index: int
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.root) != HASH_SIZE or any(len(p) != HASH_SIZE for p in self.path):
            raise ValueError("Merkle hashes are 32 bytes")

    def to_json(self) -> dict[str, object]:
        return {
            "root": self.root.hex(),
            "tree_size": self.tree_size,
            "leaf_index": self.leaf_index,
            "path": [p.hex() for p in self.path],
        }


def root_from_proof(leaf: bytes, proof: InclusionProof) -> bytes:
    """RFC 9162 section 2.1.3.2: the root that ``proof``'s path leads to from ``leaf``.

    Raises ``EvidenceError`` ``batch_index_mismatch`` when the leaf index, tree size and path
    length do not fit together (the index is outside the tree, or the path is too short or
    too long for that position); the caller compares the result with the root."""
    index, size, path = proof.leaf_index, proof.tree_size, proof.path
    if not 0 < size <= MAX_TREE_SIZE or not 0 <= index < size or len(path) > MAX_PATH:
        raise EvidenceError(
            f"leaf index {index} is not a position in a tree of {size}",
            code="batch_index_mismatch",
        )
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for sibling in path:
        if sn == 0:
            raise EvidenceError(
                "the audit path is longer than the leaf index and tree size allow",
                code="batch_index_mismatch",
            )
        if fn & 1 or fn == sn:
            r = node_hash(sibling, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise EvidenceError(
            "the audit path is shorter than the leaf index and tree size need",
            code="batch_index_mismatch",
        )
    return r


class MerkleTree:
    """The tree over ``leaves`` (at least one), with every leaf's audit path."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        if len(leaves) > MAX_TREE_SIZE:
            raise ValueError("too many leaves")
        level = [leaf_hash(leaf) for leaf in leaves]
        self._levels: list[list[bytes]] = [level]
        while len(level) > 1:
            paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                paired.append(level[-1])  # promoted unchanged
            level = paired
            self._levels.append(level)
        self.size = len(leaves)
        self.root = level[0]

    def proof(self, index: int) -> InclusionProof:
        if not 0 <= index < self.size:
            raise IndexError(index)
        path: list[bytes] = []
        position = index
        for level in self._levels[:-1]:
            sibling = position ^ 1
            if sibling < len(level):  # else this node was promoted: nothing to add
                path.append(level[sibling])
            position >>= 1
        return InclusionProof(
            root=self.root, tree_size=self.size, leaf_index=index, path=tuple(path)
        )
