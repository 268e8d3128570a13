"""Evidence documents: binding, nonce, event-log and CCEL replay, and every tampering a network
attacker or a dishonest operator could try (edit, reorder, drop events; swap keys; replay an old
nonce; pass simulation off as hardware)."""

from __future__ import annotations

import base64
import copy
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from cllm.errors import CllmError, EvidenceError
from cllm.evidence import Binding, build_evidence, check_evidence, parse_evidence
from cllm.measure import Event, EventLog
from cllm.tee import SimulatedTdBackend, load_simulated_world, rtmr3_extender
from cllm.verify import Collateral, QuoteVerifier

NOW = 1_790_000_000


def _binding(nonce: bytes) -> Binding:
    return Binding.with_throwaway_keys(nonce)


@pytest.fixture
def issued(tmp_path: Path) -> tuple[dict[str, Any], bytes, SimulatedTdBackend]:
    backend = SimulatedTdBackend(load_simulated_world(tmp_path, clock=lambda: float(NOW)))
    log = EventLog(rtmr3_extender(backend))
    for kind, name in (("package", "cllm"), ("model", "smollm2"), ("config", "config")):
        log.append(
            Event(
                rtmr=3,
                type=f"cllm.{kind}",
                name=name,
                digest=secrets.token_bytes(48),
                details={"kind": kind},
            )
        )
    nonce = secrets.token_bytes(32)
    evidence = build_evidence(
        backend,
        tee="simulated-tdx",
        binding=_binding(nonce),
        events=log.events(),
        collateral=backend.world.collateral(),
    )
    return json.loads(json.dumps(evidence.to_json())), nonce, backend


def _check(document: dict[str, Any], nonce: bytes) -> str | None:
    result = check_evidence(parse_evidence(document), expected_nonce=nonce)
    return None if result.ok else result.error.code if result.error else "?"


def test_genuine_evidence_checks_out(issued: tuple[dict[str, Any], bytes, Any]) -> None:
    document, nonce, backend = issued
    result = check_evidence(parse_evidence(document), expected_nonce=nonce)
    assert result.ok, result.error
    assert [step.name for step in result.steps] == [
        "quote",
        "tee_claim",
        "binding",
        "nonce",
        "event_log",
        "ccel",
    ]
    assert result.ccel_replayed
    assert [event.name for event in result.events] == ["cllm", "smollm2", "config"]
    # The carried collateral is only data: the quote verifies with it under the simulation root.
    collateral = Collateral.from_json_dict(document["collateral"])
    verdict = QuoteVerifier(trust_root=backend.world.dcap.trust_root()).verify(
        base64.b64decode(document["quote"]), collateral, at=NOW
    )
    assert verdict.ok
    assert parse_evidence(json.dumps(document)).to_json() == document


def test_wrong_nonce(issued: tuple[dict[str, Any], bytes, Any]) -> None:
    document, _, _ = issued
    assert _check(document, secrets.token_bytes(32)) == "nonce_mismatch"


def test_swapped_nonce_in_binding(issued: tuple[dict[str, Any], bytes, Any]) -> None:
    document, _, _ = issued
    other = secrets.token_bytes(32)
    document["binding"]["nonce"] = other.hex()
    assert _check(document, other) == "binding_mismatch"


@pytest.mark.parametrize("key", ["signing_key", "hpke_key"])
def test_swapped_keys(issued: tuple[dict[str, Any], bytes, Any], key: str) -> None:
    document, nonce, _ = issued
    document["binding"][key] = _binding(nonce).to_json()[key]
    assert _check(document, nonce) == "binding_mismatch"


def test_added_tls_hash(issued: tuple[dict[str, Any], bytes, Any]) -> None:
    document, nonce, _ = issued
    document["binding"]["tls_spki_sha256"] = "00" * 32
    assert _check(document, nonce) == "binding_mismatch"


def test_edited_event(issued: tuple[dict[str, Any], bytes, Any]) -> None:
    document, nonce, _ = issued
    document["event_log"][1]["details"]["kind"] = "other-model"
    assert _check(document, nonce) == "rtmr3_mismatch"
    document["event_log"][1]["details"]["kind"] = "model"
    document["event_log"][1]["digest"]["sha384"] = "ab" * 48
    assert _check(document, nonce) == "rtmr3_mismatch"


def test_reordered_events(issued: tuple[dict[str, Any], bytes, Any]) -> None:
    document, nonce, _ = issued
    log = document["event_log"]
    log[0], log[1] = log[1], log[0]
    assert _check(document, nonce) == "rtmr3_mismatch"


@pytest.mark.parametrize("index", [0, 1, 2])
def test_dropped_event(issued: tuple[dict[str, Any], bytes, Any], index: int) -> None:
    document, nonce, _ = issued
    del document["event_log"][index]
    assert _check(document, nonce) == "rtmr3_mismatch"


def test_added_event(issued: tuple[dict[str, Any], bytes, Any]) -> None:
    document, nonce, _ = issued
    document["event_log"].append(copy.deepcopy(document["event_log"][0]))
    assert _check(document, nonce) == "rtmr3_mismatch"


def test_event_for_another_register(issued: tuple[dict[str, Any], bytes, Any]) -> None:
    document, nonce, _ = issued
    document["event_log"][0]["rtmr"] = 2
    assert _check(document, nonce) == "eventlog_malformed"


def test_tampered_ccel(issued: tuple[dict[str, Any], bytes, Any]) -> None:
    document, nonce, _ = issued
    data = bytearray(base64.b64decode(document["ccel"]["data"]))
    digest_at = data.index(bytes.fromhex("0c00"), 100) + 2  # first SHA-384 digest of an event
    data[digest_at] ^= 1
    document["ccel"]["data"] = base64.b64encode(bytes(data)).decode()
    assert _check(document, nonce) == "ccel_mismatch"


def test_simulation_claiming_hardware(issued: tuple[dict[str, Any], bytes, Any]) -> None:
    document, nonce, _ = issued
    document["tee"] = "tdx"
    assert _check(document, nonce) == "tee_mismatch"


def test_quote_swapped_for_another(issued: tuple[dict[str, Any], bytes, Any]) -> None:
    document, nonce, backend = issued
    document["quote"] = base64.b64encode(backend.get_quote(bytes(64))).decode()
    assert _check(document, nonce) == "binding_mismatch"


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"tee": "sev"},
        {"quote": "!!"},
        {"binding": {"nonce": "zz"}},
        {"extra": 1},
        {"event_log": "x"},
    ],
)
def test_malformed_documents_are_typed(
    issued: tuple[dict[str, Any], bytes, Any], change: dict[str, Any]
) -> None:
    document, _, _ = issued
    document.update(change)
    with pytest.raises(EvidenceError) as raised:
        parse_evidence(document)
    assert raised.value.code == "evidence_malformed"


def test_malformed_quote_fails_at_the_quote_step(issued: tuple[dict[str, Any], bytes, Any]) -> None:
    document, nonce, _ = issued
    document["quote"] = base64.b64encode(b"\x04\x00" + bytes(20)).decode()
    assert _check(document, nonce) == "quote_truncated"


def test_binding_report_data_is_sha512_of_jcs() -> None:
    import hashlib

    binding = Binding(
        nonce=b"\x01" * 32, signing_key=b"\x02", hpke_key=b"\x03" * 32, tls_spki_sha256=None
    )
    canonical = (
        b'{"hpke_key":"'
        + base64.b64encode(b"\x03" * 32)
        + b'","nonce":"'
        + b"01" * 32
        + b'","signing_key":"Ag==","tls_spki_sha256":null}'
    )
    assert binding.report_data() == hashlib.sha512(canonical).digest()


def test_binding_report_data_agrees_with_rfc8785() -> None:
    import hashlib

    import rfc8785

    for tls in (None, bytes(range(32))):
        binding = Binding(
            nonce=secrets.token_bytes(32),
            signing_key=secrets.token_bytes(91),
            hpke_key=secrets.token_bytes(32),
            tls_spki_sha256=tls,
        )
        expected = hashlib.sha512(rfc8785.dumps(binding.to_json())).digest()
        assert binding.report_data() == expected


def test_memoised_ccel_replay_never_hides_a_change(
    issued: tuple[dict[str, Any], bytes, Any],
) -> None:
    from cllm import evidence as evidence_module

    document, nonce, _ = issued
    assert _check(document, nonce) is None  # the genuine log's replay is now memoised
    good = base64.b64decode(document["ccel"]["data"])
    digest_at = good.index(bytes.fromhex("0c00"), 100) + 2
    for offset in (digest_at, digest_at + 47):
        tampered = bytearray(good)
        tampered[offset] ^= 0x80
        changed = copy.deepcopy(document)
        changed["ccel"]["data"] = base64.b64encode(bytes(tampered)).decode()
        assert _check(changed, nonce) == "ccel_mismatch"
    assert _check(document, nonce) is None
    for memo in (evidence_module._replay_ccel_memo, evidence_module._b64_memo):
        info = memo.cache_info()
        assert info.maxsize is not None
        assert info.maxsize <= 2 * evidence_module._CCEL_MEMO_ENTRIES
        assert info.currsize <= info.maxsize


def test_large_ccel_logs_are_not_memoised(issued: tuple[dict[str, Any], bytes, Any]) -> None:
    from cllm import evidence as evidence_module

    document, nonce, _ = issued
    data = base64.b64decode(document["ccel"]["data"])
    # Padding past the table's LAML is ignored by the replay, but counts for the memo's limit.
    document["ccel"]["data"] = base64.b64encode(
        data + b"\xff" * evidence_module._CCEL_MEMO_MAX_BYTES
    ).decode()
    evidence_module._replay_ccel_memo.cache_clear()
    evidence_module._b64_memo.cache_clear()
    assert _check(document, nonce) is None
    assert evidence_module._replay_ccel_memo.cache_info().currsize == 0
    assert evidence_module._b64_memo.cache_info().currsize == 1  # the table only


def _event(**changes: Any) -> dict[str, Any]:
    event = Event(rtmr=3, type="cllm.model", name="m", digest=bytes(range(48))).to_json()
    event.update(changes)
    return event


def test_memoised_event_log_never_hides_a_change(
    issued: tuple[dict[str, Any], bytes, Any],
) -> None:
    document, nonce, _ = issued
    assert _check(document, nonce) is None  # the genuine log's decoding is now memoised
    edited = copy.deepcopy(document)
    edited["event_log"][1]["details"]["kind"] = "other"
    assert _check(edited, nonce) == "rtmr3_mismatch"
    swapped = copy.deepcopy(document)
    swapped["event_log"][0], swapped["event_log"][1] = (
        swapped["event_log"][1],
        swapped["event_log"][0],
    )
    assert _check(swapped, nonce) == "rtmr3_mismatch"
    assert _check(document, nonce) is None


def test_event_log_memo_is_keyed_on_exact_json_types() -> None:
    from cllm import evidence as evidence_module
    from cllm.errors import EventLogError

    parse = evidence_module._parse_events
    # {"1": ...} and {1: ...} write the same JSON text; only the first is a valid event, and
    # it being memoised must not let the second through.
    (good,) = parse([_event(details={"1": "x"})])
    assert dict(good.details) == {"1": "x"}
    with pytest.raises(EventLogError) as info:
        parse([_event(details={1: "x"})])
    assert info.value.code == "event_bad_value"
    # Floats, tuples and int subclasses take the unmemoised path and are judged as before.
    with pytest.raises(EventLogError) as info:
        parse([_event(details={"n": 1.0})])
    assert info.value.code == "event_float"
    assert parse([_event(details={"l": (1, 2)})])[0].details["l"] == (1, 2)
    # True is not 1.
    assert parse([_event(details={"b": True})])[0].canonical_bytes() != (
        parse([_event(details={"b": 1})])[0].canonical_bytes()
    )


def test_event_log_memo_is_bounded() -> None:
    from cllm import evidence as evidence_module

    memo = evidence_module._parse_event_log_text
    memo.cache_clear()
    for index in range(evidence_module._EVENTS_MEMO_ENTRIES + 5):
        evidence_module._parse_events([_event(name=f"m{index}")])
    assert memo.cache_info().currsize == evidence_module._EVENTS_MEMO_ENTRIES
    # A log over the size limit is decoded without the memo.
    memo.cache_clear()
    pad = "x" * (evidence_module._EVENTS_MEMO_MAX_CHARS // 2)
    assert len(evidence_module._parse_events([_event(details={"pad": pad})] * 2)) == 2
    assert memo.cache_info().currsize == 0
    # Nesting past what events allow is never walked into, and fails as before.
    deep: Any = "x"
    for _ in range(200):
        deep = [deep]
    with pytest.raises(CllmError):
        evidence_module._parse_events([_event(details={"d": deep})])
    assert memo.cache_info().currsize == 0
