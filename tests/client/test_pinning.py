"""The user's anchors in the SDK: a verifier's key pinned by thumbprint (or PEM/JWK), plain
HTTP verifiers only on loopback, and a verdict renewed from the moment it expires."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cllm.client import (
    AttestedSession,
    PinnedKeys,
    RemoteVerifier,
    Verification,
    attest,
    check_verifier_url,
    parse_verifier_key,
)
from cllm.errors import AttestationError, CllmError
from cllm.token import TokenSigner
from serving import ServeProcess, VerifierProcess

KEY = ec.derive_private_key(12345, ec.SECP256R1())
PRINT = "mJd3vSaHMeCkJdbijn7ZvkoA03mOfCHUl5ms5cz5wps"  # RFC 7638, also in ui/test/trust.test.js


def test_a_pin_is_given_as_thumbprint_pem_or_jwk(tmp_path: Path) -> None:
    pem = KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    jwks = TokenSigner.from_private_key(KEY).jwks()
    (tmp_path / "key.pem").write_bytes(pem)
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    assert parse_verifier_key(PRINT) == PRINT
    assert parse_verifier_key(pem.decode()) == PRINT
    assert parse_verifier_key(str(tmp_path / "key.pem")) == PRINT
    assert parse_verifier_key(str(tmp_path / "jwks.json")) == PRINT
    assert parse_verifier_key(json.dumps(jwks["keys"][0])) == PRINT


@pytest.mark.parametrize(
    "bad",
    ["not-a-key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", '{"kty": "RSA"}'],
)
def test_a_bad_pin_is_refused(bad: str) -> None:
    with pytest.raises(CllmError) as caught:
        parse_verifier_key(bad)
    assert caught.value.code == "verifier_key_invalid"


def test_a_p384_key_cannot_be_a_verifier_key() -> None:
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = other.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(CllmError) as caught:
        parse_verifier_key(pem)
    assert caught.value.code == "verifier_key_invalid"


@pytest.mark.parametrize(
    "url",
    [
        "https://verifier.invalid",
        "http://127.0.0.1:8081",
        "http://127.9.9.9",
        "http://[::1]:1",
        "http://localhost:8081/",
    ],
)
def test_https_or_loopback_verifiers_are_accepted(url: str) -> None:
    assert check_verifier_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://verifier.invalid",
        "http://192.0.2.1:8081",  # RFC 5737 documentation address: refused, never contacted
        "http://localhost.invalid",
        "ftp://x",
        "verifier.invalid",
        "http://[::2]",
    ],
)
def test_other_verifiers_are_refused(url: str) -> None:
    with pytest.raises(CllmError) as caught:
        RemoteVerifier(url)
    assert caught.value.code == "verifier_insecure"


def _kid(verifier: VerifierProcess) -> str:
    return str(httpx.get(f"{verifier.url}/.well-known/jwks.json").json()["keys"][0]["kid"])


def test_the_pinned_key_verifies(server: ServeProcess, verifier: VerifierProcess) -> None:
    remote = RemoteVerifier(verifier.url, key_pin=_kid(verifier))
    with httpx.Client(base_url=server.url, timeout=60) as http:
        result = attest(http, remote)
    assert result.status == "warning"
    assert result.verifier_key == _kid(verifier)
    assert result.keys is not None


def test_another_key_than_the_pinned_one_is_refused(
    server: ServeProcess, verifier: VerifierProcess
) -> None:
    """The verifier URL now signs with a key the user did not pin (taken over, or a
    look-alike): nothing it says counts."""
    remote = RemoteVerifier(verifier.url, key_pin=PRINT)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        result = attest(http, remote)
    assert result.status == "contraindicated"
    assert [r.code for r in result.reasons] == ["verifier_key_mismatch"]
    assert result.keys is None


# --- expiry, with an injected clock ----------------------------------------------------------

KEYS = PinnedKeys(signing_key=b"s", hpke_key=b"h" * 32)


class _Counting:
    """A verifier whose verdicts expire at ``expires_at``; counts its appraisals."""

    name = "counting"

    def __init__(self, expires_at: int) -> None:
        self.expires_at = expires_at
        self.calls = 0

    def appraise(self, document: Mapping[str, Any], *, nonce: bytes) -> Verification:
        self.calls += 1
        return Verification("warning", (), {}, "counting", 0, KEYS, self.expires_at)


def _session(verifier: _Counting, now: list[float]) -> AttestedSession:
    evidence = httpx.MockTransport(lambda request: httpx.Response(200, json={"binding": {}}))
    return AttestedSession(
        "http://server.invalid", verifier, transport=evidence, clock=lambda: now[0]
    )


def test_a_verdict_is_used_until_one_second_before_exp_and_renewed_at_exp() -> None:
    verifier = _Counting(expires_at=1000)
    now = [900.0]
    session = _session(verifier, now)
    assert session.keys() == KEYS
    assert verifier.calls == 1
    now[0] = 999.0  # exp - 1 s: still in force
    session.keys()
    session.current()
    assert verifier.calls == 1
    now[0] = 1000.0  # exp: renewed before anything is sent
    session.keys()
    assert verifier.calls == 2
    assert session.attestations == 2


def test_a_verdict_with_no_expiry_is_not_used_forever() -> None:
    verifier = _Counting(expires_at=0)
    verifier.expires_at = None  # type: ignore[assignment]
    now = [299.0]  # checked_at is 0: the default lifetime is 300 s
    session = _session(verifier, now)
    session.keys()
    session.keys()
    assert verifier.calls == 1
    now[0] = 300.0
    session.keys()
    assert verifier.calls == 2


def test_a_failed_request_makes_the_next_one_verify_first() -> None:
    verifier = _Counting(expires_at=10_000)
    session = _session(verifier, [0.0])
    session.keys()
    session.invalidate()
    session.keys()
    assert verifier.calls == 2


def test_an_expired_untrusted_verdict_still_refuses() -> None:
    class _Refusing(_Counting):
        def appraise(self, document: Mapping[str, Any], *, nonce: bytes) -> Verification:
            self.calls += 1
            return Verification("contraindicated", (), {}, "refusing", 0, None, 5)

    session = _session(_Refusing(0), [0.0])
    with pytest.raises(AttestationError) as caught:
        session.keys()
    assert caught.value.code == "attestation_failed"
