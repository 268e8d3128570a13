"""The evidence document and its report_data binding (docs/design.md §5).

Shared by the server (builds it), the verifier service and the client (check it). The quote
commits to ``binding`` through ``report_data = SHA-512(JCS(binding))``; the binding carries the
client's nonce and the keys the client will then use, so evidence is fresh and bound to them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, Final, Literal

import pydantic
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ConfigDict, Field

from cllm.errors import CllmError, EvidenceError
from cllm.measure import (
    MAX_DEPTH,
    MEASURED_RTMR,
    Event,
    Rtmrs,
    canonical_json,
    parse_event_log,
    replay,
    replay_ccel,
)
from cllm.merkle import (
    HASH_SIZE,
    MAX_PATH,
    MAX_TREE_SIZE,
    InclusionProof,
    MerkleTree,
    root_from_proof,
)
from cllm.quote import Quote, parse_quote
from cllm.quote import layout as quote_layout
from cllm.tee import TeeBackend
from cllm.verify import Collateral, Step

__all__ = [
    "BATCH_EVIDENCE_VERSION",
    "EVIDENCE_VERSION",
    "NONCE_SIZE",
    "Binding",
    "Ccel",
    "Evidence",
    "EvidenceCheck",
    "GpuCollect",
    "TeeKind",
    "build_batch_evidence",
    "build_evidence",
    "check_batch",
    "check_batch_binding",
    "check_batch_proof",
    "check_evidence",
    "gpu_field_digest",
    "parse_evidence",
]

EVIDENCE_VERSION: Final = 1
BATCH_EVIDENCE_VERSION: Final = 2  # one quote for a batch of nonces (docs/protocol.md)
NONCE_SIZE: Final = 32
TeeKind = Literal["tdx", "simulated-tdx"]


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EvidenceError(f"{what} is not base64", code="evidence_malformed") from exc


def _hex(value: str, what: str, size: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise EvidenceError(f"{what} is not hex", code="evidence_malformed") from exc
    if size is not None and len(raw) != size:
        raise EvidenceError(f"{what} must be {size} bytes", code="evidence_malformed")
    return raw


# The firmware log is the same in every evidence document of one TD boot, so its decoding and
# its replay are memoised on their exact input (the base64 text; the table and log bytes):
# pure functions of it, recomputed for any other input. Bounded in entries, and logs over the
# size limit are never kept.
_CCEL_MEMO_ENTRIES: Final = 16
_CCEL_MEMO_MAX_BYTES: Final = 128 * 1024  # TDVF's log area is 64 KiB


@functools.lru_cache(maxsize=_CCEL_MEMO_ENTRIES)
def _replay_ccel_memo(table: bytes, data: bytes) -> Rtmrs:
    return replay_ccel(table, data)


@functools.lru_cache(maxsize=2 * _CCEL_MEMO_ENTRIES)
def _b64_memo(value: str, what: str) -> bytes:
    return _b64(value, what)


def _ccel_b64(value: str, what: str) -> bytes:
    """``_b64`` memoised on the exact text for firmware logs (the same in every document of a
    TD boot), which also hands the replay memo the very same bytes object again."""
    if len(value) <= _CCEL_MEMO_MAX_BYTES * 4 // 3:
        return _b64_memo(value, what)
    return _b64(value, what)


def _replay_ccel(table: bytes, data: bytes) -> Rtmrs:
    if (
        type(table) is bytes
        and type(data) is bytes
        and len(table) + len(data) <= _CCEL_MEMO_MAX_BYTES
    ):
        return _replay_ccel_memo(table, data)
    return replay_ccel(table, data)


# The cllm event log, too, is the same in every document of one TD boot (until an event is
# appended). Its decoding is memoised on its exact JSON text, for logs made only of the plain
# types JSON decodes to (dict with str keys, list, str, int, bool, None: for those the text
# determines the value, types included, and decoding the text gives the value back exactly).
_EVENTS_MEMO_ENTRIES: Final = 32
_EVENTS_MEMO_MAX_CHARS: Final = 64 * 1024
_EVENTS_TEXT: Final = json.JSONEncoder(check_circular=False).encode  # ASCII: escapes everything
_PLAIN_DEPTH: Final = MAX_DEPTH + 2  # the list, then events nested as deep as events may be


def _is_plain_json(value: object, depth: int = 0) -> bool:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if depth >= _PLAIN_DEPTH:
        return False
    if kind is dict and isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str:
                return False
            item_kind = type(item)  # scalars inline: they are most of a log
            if not (item_kind is str or item_kind is int or item is None) and (
                not _is_plain_json(item, depth + 1)
            ):
                return False
        return True
    if kind is list and isinstance(value, list):
        return all(_is_plain_json(item, depth + 1) for item in value)
    return False  # floats, tuples, other mappings...: never memoised


@functools.lru_cache(maxsize=_EVENTS_MEMO_ENTRIES)
def _parse_event_log_text(text: str) -> tuple[Event, ...]:
    return parse_event_log(json.loads(text))


def _parse_events(items: Sequence[Mapping[str, Any]]) -> tuple[Event, ...]:
    """``parse_event_log(list(items))``, memoised on the exact text of a plain-JSON log."""
    log = list(items)
    if _is_plain_json(log):
        try:
            text = _EVENTS_TEXT(log)
        except ValueError:  # an integer too long to write as text
            return parse_event_log(log)
        if len(text) <= _EVENTS_MEMO_MAX_CHARS:
            return _parse_event_log_text(text)
    return parse_event_log(log)


@dataclass(frozen=True, slots=True)
class Binding:
    """What the quote's report_data commits to."""

    nonce: bytes  # 32 bytes, chosen by the client
    signing_key: bytes  # SPKI DER of the server's per-boot response-signing key
    hpke_key: bytes  # raw X25519 public key (32 bytes) for end-to-end encryption
    tls_spki_sha256: bytes | None  # SHA-256 of the TLS certificate's SPKI, when TLS ends in the TD
    # SHA-384(JCS(the evidence's gpu field)) when it carries one (docs/protocol.md, "GPU
    # evidence"); absent from the JSON otherwise, so documents without GPUs are unchanged.
    gpu_sha384: bytes | None = None

    def to_json(self) -> dict[str, str | None]:
        doc = {
            "nonce": self.nonce.hex(),
            "signing_key": base64.b64encode(self.signing_key).decode(),
            "hpke_key": base64.b64encode(self.hpke_key).decode(),
            "tls_spki_sha256": self.tls_spki_sha256.hex() if self.tls_spki_sha256 else None,
        }
        if self.gpu_sha384 is not None:
            doc["gpu_sha384"] = self.gpu_sha384.hex()
        return doc

    def keys_digest(self) -> bytes:
        """SHA-256(JCS(the keys alone)): what every GPU nonce is derived with (``gpu_nonce``)."""
        doc = self.to_json()
        del doc["nonce"]
        doc.pop("gpu_sha384", None)
        return hashlib.sha256(canonical_json(doc)).digest()

    @classmethod
    def with_throwaway_keys(cls, nonce: bytes) -> Binding:
        """A binding to freshly generated keys whose private halves are dropped at once: for
        ``cllm tee evidence`` and tests, where nobody is meant to talk to the keys."""
        signing = ec.generate_private_key(ec.SECP256R1()).public_key()
        hpke = x25519.X25519PrivateKey.generate().public_key()
        return cls(
            nonce=nonce,
            signing_key=signing.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
            hpke_key=hpke.public_bytes(Encoding.Raw, PublicFormat.Raw),
            tls_spki_sha256=None,
        )

    def report_data(self) -> bytes:
        """SHA-512 of the RFC 8785 canonical JSON of the binding: the quote's REPORTDATA."""
        # Hex, base64 and null under fixed ASCII keys: within what canonical_json takes.
        return hashlib.sha512(canonical_json(self.to_json())).digest()

    def batch_report_data(self, root: bytes) -> bytes:
        """Version 2: SHA-256(JCS(the binding with ``batch_root`` in place of ``nonce``)) ||
        ``root``. The first half commits to the keys and the root, the second shows the root."""
        doc: dict[str, str | None] = {**self.to_json(), "batch_root": root.hex()}
        del doc["nonce"]
        return hashlib.sha256(canonical_json(doc)).digest() + root


@dataclass(frozen=True, slots=True)
class Ccel:
    table: bytes  # ACPI CCEL table
    data: bytes  # TCG crypto-agile event log area


@dataclass(frozen=True, slots=True)
class Evidence:
    """A decoded evidence document. ``event_log`` entries are kept as the JSON objects that
    were hashed (see ``cllm.measure``); ``collateral`` as its QuoteCollateralV3 JSON object."""

    tee: TeeKind
    quote: bytes
    event_log: tuple[Mapping[str, Any], ...]
    ccel: Ccel | None
    binding: Binding
    collateral: Mapping[str, Any] | None
    batch: InclusionProof | None = None  # version 2: binding.nonce's proof under the root
    gpu: Mapping[str, Any] | None = None  # the GPU evidence field, as sent (cllm.gpu)

    def to_json(self) -> dict[str, Any]:
        doc = {
            "version": EVIDENCE_VERSION if self.batch is None else BATCH_EVIDENCE_VERSION,
            "tee": self.tee,
            "quote": base64.b64encode(self.quote).decode(),
            "event_log": [dict(event) for event in self.event_log],
            "ccel": (
                {
                    "table": base64.b64encode(self.ccel.table).decode(),
                    "data": base64.b64encode(self.ccel.data).decode(),
                }
                if self.ccel
                else None
            ),
            "binding": self.binding.to_json(),
            "collateral": dict(self.collateral) if self.collateral is not None else None,
        }
        if self.batch is not None:
            doc["batch"] = self.batch.to_json()
        if self.gpu is not None:
            doc["gpu"] = dict(self.gpu)
        return doc


class _BindingModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    nonce: str = Field(pattern=r"^[0-9a-f]{64}$")
    signing_key: str = Field(max_length=4096)
    hpke_key: str = Field(max_length=64)
    tls_spki_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    gpu_sha384: str | None = Field(default=None, pattern=r"^[0-9a-f]{96}$")


class _CcelModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    table: str = Field(max_length=1024)
    data: str = Field(max_length=16 * 1024 * 1024)


class _BatchModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    root: str = Field(pattern=r"^[0-9a-f]{64}$")
    tree_size: int = Field(ge=1, le=MAX_TREE_SIZE, strict=True)
    leaf_index: int = Field(ge=0, lt=MAX_TREE_SIZE, strict=True)
    path: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(max_length=MAX_PATH)


class _EvidenceModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1, 2]
    tee: TeeKind
    quote: str = Field(max_length=64 * 1024)
    event_log: list[dict[str, Any]] = Field(max_length=10_000)
    ccel: _CcelModel | None
    binding: _BindingModel
    collateral: dict[str, Any] | None = None
    batch: _BatchModel | None = None
    gpu: dict[str, Any] | None = None


def _batch(model: _EvidenceModel) -> InclusionProof | None:
    if (model.version == BATCH_EVIDENCE_VERSION) != (model.batch is not None):
        raise EvidenceError(
            "evidence version 2 carries a batch proof, version 1 none", code="evidence_malformed"
        )
    if model.batch is None:
        return None
    return InclusionProof(
        root=_hex(model.batch.root, "batch.root", HASH_SIZE),
        tree_size=model.batch.tree_size,
        leaf_index=model.batch.leaf_index,
        path=tuple(_hex(p, "batch.path", HASH_SIZE) for p in model.batch.path),
    )


def parse_evidence(document: Mapping[str, Any] | str | bytes) -> Evidence:
    """Decode an evidence document (a JSON object, or its text); typed errors only."""
    try:
        if isinstance(document, str | bytes):
            model = _EvidenceModel.model_validate_json(document)
        else:
            model = _EvidenceModel.model_validate(document)
    except pydantic.ValidationError as exc:
        raise EvidenceError(
            f"evidence document is malformed: {exc}", code="evidence_malformed"
        ) from exc
    hpke_key = _b64(model.binding.hpke_key, "binding.hpke_key")
    if len(hpke_key) != 32:
        raise EvidenceError("binding.hpke_key must be a raw X25519 key", code="evidence_malformed")
    binding = Binding(
        nonce=_hex(model.binding.nonce, "binding.nonce", NONCE_SIZE),
        signing_key=_b64(model.binding.signing_key, "binding.signing_key"),
        hpke_key=hpke_key,
        tls_spki_sha256=(
            _hex(model.binding.tls_spki_sha256, "binding.tls_spki_sha256", 32)
            if model.binding.tls_spki_sha256
            else None
        ),
        gpu_sha384=(
            _hex(model.binding.gpu_sha384, "binding.gpu_sha384", 48)
            if model.binding.gpu_sha384
            else None
        ),
    )
    ccel = (
        Ccel(
            table=_ccel_b64(model.ccel.table, "ccel.table"),
            data=_ccel_b64(model.ccel.data, "ccel.data"),
        )
        if model.ccel
        else None
    )
    return Evidence(
        tee=model.tee,
        quote=_b64(model.quote, "quote"),
        event_log=tuple(model.event_log),
        ccel=ccel,
        binding=binding,
        collateral=model.collateral,
        batch=_batch(model),
        gpu=model.gpu,
    )


@dataclass(frozen=True, slots=True)
class EvidenceCheck:
    """Outcome of ``check_evidence``: one named step each, fail-closed.

    This checks the binding and the logs against the quote. Whether the quote itself is genuine
    (DCAP chain, signatures, TCB) is ``cllm.verify.QuoteVerifier``'s job; a verifier runs both.
    """

    ok: bool
    steps: tuple[Step, ...]
    error: CllmError | None
    quote: Quote | None = None
    events: tuple[Event, ...] = ()
    rtmrs: Rtmrs | None = None  # the quote's registers
    ccel_replayed: bool = False


def check_batch_binding(report_data: bytes, evidence: Evidence) -> None:
    """Version 2: the quote binds the batch root (``batch_root_unbound`` if not) and, with it,
    the keys (``binding_mismatch``)."""
    assert evidence.batch is not None
    root = evidence.batch.root
    if not hmac.compare_digest(report_data[HASH_SIZE:], root):
        raise EvidenceError(
            "the quote binds another batch root than the evidence's (a root it never quoted, or "
            "a quote of another batch)",
            code="batch_root_unbound",
        )
    if not hmac.compare_digest(report_data, evidence.binding.batch_report_data(root)):
        raise EvidenceError(
            "report_data is not SHA-256(JCS(batch binding)) || root: the keys were swapped",
            code="binding_mismatch",
        )


def check_batch_proof(nonce: bytes, proof: InclusionProof) -> None:
    """Version 2: ``nonce`` is a leaf of the batch (``batch_index_mismatch`` for an index that
    does not fit the path, ``batch_proof_invalid`` for a path that leads elsewhere)."""
    if not hmac.compare_digest(root_from_proof(nonce, proof), proof.root):
        raise EvidenceError(
            "the audit path does not lead from this nonce to the batch root",
            code="batch_proof_invalid",
        )


def check_batch(evidence: Evidence, *, expected_nonce: bytes) -> None:
    """For version 2 evidence, the batch checks alone (root and keys bound by the quote, the
    nonce, its inclusion proof), raising ``EvidenceError``: for a client whose verifier service
    ran ``check_evidence`` and that checks the proof for its own nonce again itself."""
    if evidence.batch is None:
        return
    try:
        report_data = parse_quote(evidence.quote).td_report.report_data
    except (CllmError, ValueError) as exc:
        raise EvidenceError(
            "the evidence quote is not a TDX quote", code="evidence_malformed"
        ) from exc
    check_batch_binding(report_data, evidence)
    if not hmac.compare_digest(evidence.binding.nonce, expected_nonce):
        raise EvidenceError("the evidence answers another nonce", code="nonce_mismatch")
    check_batch_proof(evidence.binding.nonce, evidence.batch)


def check_evidence(evidence: Evidence, *, expected_nonce: bytes) -> EvidenceCheck:
    """1 quote is TDX, 2 ``tee`` claim consistent with the QE vendor, 3 report_data =
    SHA-512(JCS(binding)) (version 2: SHA-256(JCS(batch binding)) || batch root), 4 binding
    nonce = ``expected_nonce``, (version 2: 5 the nonce's inclusion proof leads to the batch
    root), then the event log replays to RTMR3 and the CCEL (when present) to RTMR0..RTMR2."""
    state: dict[str, Any] = {}

    def quote_is_tdx() -> None:
        quote = parse_quote(evidence.quote)
        if not quote.is_tdx:
            raise EvidenceError("the evidence quote is not a TDX quote", code="evidence_malformed")
        state["quote"] = quote
        body = quote.td_report
        state["rtmrs"] = Rtmrs(body.rtmr0, body.rtmr1, body.rtmr2, body.rtmr3)

    def tee_claim() -> None:
        vendor = state["quote"].header.qe_vendor_id
        if evidence.tee == "tdx" and vendor != quote_layout.INTEL_QE_VENDOR_ID:
            raise EvidenceError(
                "evidence claims TDX hardware but the quote is not from Intel's QE",
                code="tee_mismatch",
            )
        if evidence.tee == "simulated-tdx" and vendor == quote_layout.INTEL_QE_VENDOR_ID:
            raise EvidenceError(
                "evidence claims a simulated TD but carries an Intel QE quote", code="tee_mismatch"
            )

    def binding() -> None:
        if evidence.batch is not None:
            check_batch_binding(state["quote"].td_report.report_data, evidence)
            return
        if state["quote"].td_report.report_data != evidence.binding.report_data():
            raise EvidenceError(
                "report_data is not SHA-512(JCS(binding)): the keys or nonce were swapped",
                code="binding_mismatch",
            )

    def nonce() -> None:
        if not hmac.compare_digest(evidence.binding.nonce, expected_nonce):
            raise EvidenceError("the evidence answers another nonce", code="nonce_mismatch")

    def batch_proof() -> None:
        assert evidence.batch is not None
        check_batch_proof(evidence.binding.nonce, evidence.batch)

    def event_log() -> None:
        events = _parse_events(evidence.event_log)
        if any(event.rtmr != MEASURED_RTMR for event in events):
            raise EvidenceError(
                f"cllm events extend RTMR{MEASURED_RTMR} only", code="eventlog_malformed"
            )
        state["events"] = events
        if replay(events)[MEASURED_RTMR] != state["rtmrs"][MEASURED_RTMR]:
            raise EvidenceError(
                "the event log does not replay to the quote's RTMR3 "
                "(an event was edited, reordered, added or dropped)",
                code="rtmr3_mismatch",
            )

    def ccel() -> None:
        if evidence.ccel is None:
            return
        firmware = _replay_ccel(evidence.ccel.table, evidence.ccel.data)
        quoted = state["rtmrs"]
        for index in range(3):
            if firmware[index] != quoted[index]:
                raise EvidenceError(
                    f"the CCEL firmware log does not replay to the quote's RTMR{index}",
                    code="ccel_mismatch",
                )
        state["ccel_replayed"] = True

    steps: list[Step] = []
    error: CllmError | None = None
    pipeline = (
        ("quote", quote_is_tdx),
        ("tee_claim", tee_claim),
        ("binding", binding),
        ("nonce", nonce),
        *((("batch_proof", batch_proof),) if evidence.batch is not None else ()),
        ("event_log", event_log),
        ("ccel", ccel),
    )
    for number, (name, run) in enumerate(pipeline, start=1):
        try:
            run()
        except CllmError as exc:
            error = exc
            steps.append(Step(number, name, False, exc.code, exc.message))
            break
        steps.append(Step(number, name, True))
    return EvidenceCheck(
        ok=error is None,
        steps=tuple(steps),
        error=error,
        quote=state.get("quote"),
        events=state.get("events", ()),
        rtmrs=state.get("rtmrs"),
        ccel_replayed=state.get("ccel_replayed", False),
    )


# ``(anchor, keys digest) -> the gpu field``: the server's GPU collection for one quote, with
# each GPU's nonce derived from both (``cllm.gpu.gpu_nonce``).
GpuCollect = Callable[[bytes, bytes], Mapping[str, Any]]


def gpu_field_digest(document: Mapping[str, Any]) -> bytes:
    """SHA-384(JCS(gpu field)): what ``Binding.gpu_sha384`` holds."""
    return hashlib.sha384(canonical_json(document)).digest()


def build_evidence(
    backend: TeeBackend,
    *,
    tee: TeeKind,
    binding: Binding,
    events: Sequence[Event],
    collateral: Collateral | None,
    gpu: GpuCollect | None = None,
) -> Evidence:
    """Quote ``binding`` on ``backend`` and package it with the log that led to its RTMR3.

    ``events`` must be exactly what was extended into the backend's RTMR3 (an ``EventLog``'s
    ``events()``); the quote is taken after, so the two agree unless an append races it, which
    a verifier then sees as ``rtmr3_mismatch``. ``gpu`` collects GPU evidence first, its nonces
    derived from the client's nonce; the binding then commits to its digest.
    """
    gpu_doc = gpu(binding.nonce, binding.keys_digest()) if gpu is not None else None
    if gpu_doc is not None:
        binding = replace(binding, gpu_sha384=gpu_field_digest(gpu_doc))
    quote = backend.get_quote(binding.report_data())
    ccel = backend.read_ccel()
    return Evidence(
        tee=tee,
        quote=quote,
        event_log=tuple(event.to_json() for event in events),
        ccel=Ccel(table=ccel[0], data=ccel[1]) if ccel else None,
        binding=binding,
        collateral=collateral.to_json_dict() if collateral is not None else None,
        gpu=gpu_doc,
    )


def build_batch_evidence(
    backend: TeeBackend,
    *,
    tee: TeeKind,
    bindings: Sequence[Binding],
    events: Sequence[Event],
    collateral: Collateral | None,
    gpu: GpuCollect | None = None,
) -> list[Evidence]:
    """Version 2: one quote for all ``bindings`` (the same keys, each with its client's nonce),
    over the Merkle root of their nonces; one document per binding, in order, each with its own
    inclusion proof."""
    if not bindings:
        raise ValueError("a batch needs at least one binding")
    first = bindings[0]
    if any(b.signing_key != first.signing_key or b.hpke_key != first.hpke_key for b in bindings):
        raise ValueError("one batch, one set of keys")
    if any(b.tls_spki_sha256 != first.tls_spki_sha256 for b in bindings):
        raise ValueError("one batch, one set of keys")
    tree = MerkleTree([b.nonce for b in bindings])
    gpu_doc = gpu(tree.root, first.keys_digest()) if gpu is not None else None
    if gpu_doc is not None:
        digest = gpu_field_digest(gpu_doc)
        bindings = [replace(b, gpu_sha384=digest) for b in bindings]
        first = bindings[0]
    quote = backend.get_quote(first.batch_report_data(tree.root))
    ccel = backend.read_ccel()
    log = tuple(event.to_json() for event in events)
    carried = collateral.to_json_dict() if collateral is not None else None
    return [
        Evidence(
            tee=tee,
            quote=quote,
            event_log=log,
            ccel=Ccel(table=ccel[0], data=ccel[1]) if ccel else None,
            binding=binding,
            collateral=carried,
            batch=tree.proof(index),
            gpu=gpu_doc,
        )
        for index, binding in enumerate(bindings)
    ]
