"""Version 2 evidence documents for a batch of nonces, as response bodies.

Everything but the quote, the client's nonce and its proof is the same in every document of a
server process (the keys, the event log, the firmware log, the simulated collateral), so it is
serialised once; each batch adds its quote, each client its nonce and proof. The bytes are
exactly ``Evidence.to_json()`` as JSON (the tests parse them back and compare).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import replace

from cllm.evidence import BATCH_EVIDENCE_VERSION, Binding, GpuCollect, TeeKind, gpu_field_digest
from cllm.measure import Event
from cllm.merkle import MerkleTree
from cllm.tee import TeeBackend
from cllm.verify import Collateral

__all__ = ["BatchEvidence"]


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class BatchEvidence:
    """``(nonces) -> bodies``: one quote over the nonces' Merkle root, one document each."""

    def __init__(
        self,
        backend: TeeBackend,
        *,
        tee: TeeKind,
        keys: Binding,  # the server's keys; its nonce is ignored
        events: Sequence[Event],
        collateral: Collateral | None,
        gpu: GpuCollect | None = None,
    ) -> None:
        self._backend = backend
        self._keys = keys
        self._gpu = gpu  # one GPU collection per batch, its nonces derived from the root
        self._keys_digest = keys.keys_digest()
        ccel = backend.read_ccel()
        self._head = (
            b'{"version":' + _json(BATCH_EVIDENCE_VERSION) + b',"tee":' + _json(tee) + b',"quote":"'
        )
        ccel_doc = (
            {
                "table": base64.b64encode(ccel[0]).decode(),
                "data": base64.b64encode(ccel[1]).decode(),
            }
            if ccel
            else None
        )
        self._middle = (
            b'","event_log":'
            + _json([event.to_json() for event in events])
            + b',"ccel":'
            + _json(ccel_doc)
            + b',"binding":{"nonce":"'
        )
        keys_doc = keys.to_json()
        del keys_doc["nonce"]
        self._keys_tail = _json(keys_doc)[1:]  # ',"signing_key":...}' without its "{"
        self._keys_open = self._keys_tail[:-1]  # ... and without its "}", for gpu_sha384
        self._collateral = b',"collateral":' + _json(
            collateral.to_json_dict() if collateral is not None else None
        )

    def __call__(self, nonces: Sequence[bytes]) -> list[bytes]:
        tree = MerkleTree(nonces)
        keys, keys_tail, gpu_tail = self._keys, self._keys_tail, b""
        if self._gpu is not None:
            gpu_doc = self._gpu(tree.root, self._keys_digest)
            digest = gpu_field_digest(gpu_doc)
            keys = replace(keys, gpu_sha384=digest)
            keys_tail = self._keys_open + b',"gpu_sha384":"' + digest.hex().encode() + b'"}'
            gpu_tail = b',"gpu":' + _json(gpu_doc)
        quote = self._backend.get_quote(keys.batch_report_data(tree.root))
        shared = self._head + base64.b64encode(quote) + self._middle
        tail = self._collateral + b',"batch":'
        bodies = []
        for index, nonce in enumerate(nonces):
            proof = tree.proof(index)
            bodies.append(
                shared
                + nonce.hex().encode()
                + b'",'
                + keys_tail
                + tail
                + _json(proof.to_json())
                + gpu_tail
                + b"}"
            )
        return bodies
