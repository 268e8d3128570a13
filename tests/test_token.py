"""Attestation tokens: ES256 issue/verify, the persisted key, JWKS, and forged-token rejection."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

import cllm.token as token_module
from cllm.errors import CllmError, VerificationError
from cllm.token import KEY_FILE, TokenSigner, jwk_thumbprint, verify_token
from fuzzing import budget

NOW = 1_700_000_000
LIFETIME = 300
ISSUER = "https://verifier.example"


def _signer() -> TokenSigner:
    return TokenSigner.from_private_key(ec.generate_private_key(ec.SECP256R1()))


SIGNER = _signer()
OTHER = _signer()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(value: object) -> str:
    return _b64(json.dumps(value).encode())


def _claims(**extra: Any) -> dict[str, Any]:
    return {"iss": ISSUER, "iat": NOW, "exp": NOW + LIFETIME, "jti": "j", **extra}


def _error(token: str, **kwargs: Any) -> VerificationError:
    kwargs.setdefault("jwks", SIGNER.jwks())
    kwargs.setdefault("now", NOW)
    with pytest.raises(VerificationError) as info:
        verify_token(token, **kwargs)
    return info.value


def _code(token: str, **kwargs: Any) -> str:
    return _error(token, **kwargs).code


def _issue(**claims: Any) -> str:
    return SIGNER.issue(claims, now=NOW, lifetime=LIFETIME, issuer=ISSUER)


# --- round trip and the issued token -------------------------------------------------------------


def test_round_trip_adds_registered_claims() -> None:
    token = _issue(status="affirming", reasons=[], nonce="ab" * 16)
    claims = verify_token(token, jwks=SIGNER.jwks(), now=NOW, issuer=ISSUER)
    assert claims["status"] == "affirming"
    assert claims["reasons"] == []
    assert claims["nonce"] == "ab" * 16
    assert claims["iss"] == ISSUER
    assert claims["iat"] == NOW
    assert claims["exp"] == NOW + LIFETIME
    assert len(_unb64(claims["jti"])) == 16
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "typ": "JWT", "kid": SIGNER.kid}


def test_jti_is_fresh_per_token() -> None:
    jtis = {verify_token(_issue(), jwks=SIGNER.jwks(), now=NOW)["jti"] for _ in range(20)}
    assert len(jtis) == 20


def test_issuer_is_optional_for_verification() -> None:
    assert verify_token(_issue(), jwks=SIGNER.jwks(), now=NOW)["iss"] == ISSUER


@pytest.mark.parametrize("reserved", ["iss", "iat", "exp", "jti"])
def test_issue_refuses_to_override_registered_claims(reserved: str) -> None:
    with pytest.raises(ValueError, match=reserved):
        SIGNER.issue({reserved: 1}, now=NOW, lifetime=LIFETIME, issuer=ISSUER)


@pytest.mark.parametrize(
    ("now", "lifetime", "issuer"), [(NOW, 0, ISSUER), (NOW, -5, ISSUER), (NOW, 60, "")]
)
def test_issue_rejects_bad_arguments(now: int, lifetime: int, issuer: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the argument is named in each message
        SIGNER.issue({}, now=now, lifetime=lifetime, issuer=issuer)


def test_signer_refuses_other_curves_and_hides_key() -> None:
    with pytest.raises(CllmError) as info:
        TokenSigner.from_private_key(ec.generate_private_key(ec.SECP384R1()))
    assert info.value.code == "token_key_invalid"
    assert repr(SIGNER) == f"TokenSigner(kid={SIGNER.kid!r})"
    assert TokenSigner.from_private_key(SIGNER.key) == SIGNER
    assert SIGNER != OTHER


# --- JWKS and kid --------------------------------------------------------------------------------


def test_jwks_shape() -> None:
    jwks = SIGNER.jwks()
    assert list(jwks) == ["keys"]
    (key,) = jwks["keys"]
    assert set(key) == {"kty", "crv", "x", "y", "kid", "use", "alg"}
    assert (key["kty"], key["crv"], key["use"], key["alg"]) == ("EC", "P-256", "sig", "ES256")
    assert key["kid"] == SIGNER.kid
    assert len(_unb64(key["x"])) == len(_unb64(key["y"])) == 32
    assert json.loads(json.dumps(jwks)) == jwks


def test_kid_is_rfc7638_thumbprint() -> None:
    (key,) = SIGNER.jwks()["keys"]
    required = {name: key[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":")).encode()
    assert SIGNER.kid == _b64(hashlib.sha256(canonical).digest())


def test_thumbprint_known_answer() -> None:
    # RFC 9449 (DPoP) section 6.1 gives this P-256 key and its RFC 7638 thumbprint (jkt).
    rfc_key = {
        "kty": "EC",
        "crv": "P-256",
        "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
        "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
    }
    public_key = jwt.PyJWK(rfc_key).key
    assert jwk_thumbprint(public_key) == "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"


def test_independent_verification_with_pyjwt() -> None:
    # What an outside check does with its own code: fetch the JWKS, pick the key by kid, let
    # PyJWT verify everything (with its own clock, hence a token issued at the real time).
    token = SIGNER.issue(
        {"status": "affirming"}, now=int(time.time()), lifetime=LIFETIME, issuer=ISSUER
    )
    jwk_set = jwt.PyJWKSet.from_dict(SIGNER.jwks())
    signing_key = jwk_set[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(
        token,
        signing_key,
        algorithms=["ES256"],
        issuer=ISSUER,
        options={"require": ["exp", "iat", "iss", "jti"]},
    )
    assert claims["status"] == "affirming"


def test_token_is_what_pyjwt_encodes(monkeypatch: pytest.MonkeyPatch) -> None:
    # issue() builds the compact JWS itself; header and payload must be the bytes PyJWT's
    # jwt.encode writes for the same claims (ES256 signatures are randomised, so the third
    # segment is checked by verifying it).
    monkeypatch.setattr(token_module.secrets, "token_urlsafe", lambda size: "fixed-jti")
    claims = {
        "status": "warning",
        "reasons": [{"code": "simulated_evidence", "message": '\u00e9v\u00e9nement "x"'}],
        "tcb": None,
        "components": [{"type": "cllm.model", "name": "m", "digest": "ab" * 48}],
        "simulated": True,
        "n": 1.5,
    }
    token = SIGNER.issue(claims, now=NOW, lifetime=LIFETIME, issuer=ISSUER)
    payload = {**claims, "iss": ISSUER, "iat": NOW, "exp": NOW + LIFETIME, "jti": "fixed-jti"}
    reference = jwt.encode(
        payload,
        SIGNER.key,
        algorithm="ES256",
        headers={"alg": "ES256", "typ": "JWT", "kid": SIGNER.kid},
    )
    assert token.split(".")[:2] == reference.split(".")[:2]
    assert len(_unb64(token.split(".")[2])) == 64  # raw r || s
    public_key = SIGNER.key.public_key()
    unchecked_times = {"verify_exp": False, "verify_iat": False}
    assert jwt.decode(token, public_key, algorithms=["ES256"], options=unchecked_times) == payload
    assert verify_token(token, jwks=SIGNER.jwks(), now=NOW) == payload


def test_signatures_are_fresh_per_token() -> None:
    tokens = {_issue(status="affirming") for _ in range(5)}
    assert len({token.split(".")[2] for token in tokens}) == 5


def test_jwks_with_several_keys_picks_by_kid() -> None:
    jwks = {"keys": OTHER.jwks()["keys"] + SIGNER.jwks()["keys"]}
    assert verify_token(_issue(), jwks=jwks, now=NOW)["iss"] == ISSUER
    other_token = OTHER.issue({}, now=NOW, lifetime=LIFETIME, issuer=ISSUER)
    assert verify_token(other_token, jwks=jwks, now=NOW)["iss"] == ISSUER


def _entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = dict(SIGNER.jwks()["keys"][0])
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


@pytest.mark.parametrize(
    "jwks",
    [
        {},
        {"keys": "nope"},
        {"keys": [_entry(), _entry()]},  # one kid, two keys: ambiguous
        {"keys": [_entry(alg="RS256")]},
        {"keys": [_entry(use="enc")]},
        {"keys": [_entry(kty="RSA")]},
        {"keys": [_entry(crv="P-384")]},
        {"keys": [_entry(x="AAAA")]},
        {"keys": [_entry(y=None)]},
        {"keys": [_entry(d=_b64(b"\x01" * 32))]},  # a private JWK is not a published key
    ],
)
def test_malformed_jwks(jwks: dict[str, Any]) -> None:
    assert _code(_issue(), jwks=jwks) == "token_jwks_invalid"


# --- the persisted key ---------------------------------------------------------------------------


def test_key_is_persisted_0600_and_reused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = TokenSigner.load_or_create(state)
    path = state / KEY_FILE
    assert path == state / "verifier" / "token-key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    second = TokenSigner.load_or_create(state)
    assert second.kid == first.kid
    assert path.read_bytes() == pem
    token = first.issue({}, now=NOW, lifetime=LIFETIME, issuer=ISSUER)
    assert verify_token(token, jwks=second.jwks(), now=NOW)["iss"] == ISSUER
    # Nothing but the key is left behind (no temporary files).
    assert [p.name for p in path.parent.iterdir()] == ["token-key.pem"]


def test_concurrent_first_loads_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Both loaders are held until each has generated its own key, so both really race to
    # publish; the one that loses must use the winner's key, not its own.
    barrier = threading.Barrier(2, timeout=10)
    generated: list[ec.EllipticCurvePrivateKey] = []
    real_generate: Callable[..., ec.EllipticCurvePrivateKey] = ec.generate_private_key

    def generate(curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
        key = real_generate(curve)
        generated.append(key)
        barrier.wait()
        return key

    monkeypatch.setattr(token_module, "generate_private_key", generate)
    results: list[TokenSigner] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            results.append(TokenSigner.load_or_create(tmp_path))
        except BaseException as exc:  # reported below; a thread must not swallow it
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert len(generated) == 2
    assert len(results) == 2
    assert results[0].kid == results[1].kid
    assert results[0].kid in {jwk_thumbprint(key.public_key()) for key in generated}
    assert TokenSigner.load_or_create(tmp_path).kid == results[0].kid


def _write_key(tmp_path: Path, content: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / KEY_FILE
    path.parent.mkdir(mode=0o700, parents=True)
    path.write_bytes(content)
    path.chmod(mode)
    return path


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    "content",
    [
        b"garbage",
        b"",
        _pem(ec.generate_private_key(ec.SECP384R1())),
        _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        ),
    ],
)
def test_bad_key_file(tmp_path: Path, content: bytes) -> None:
    _write_key(tmp_path, content)
    with pytest.raises(CllmError) as info:
        TokenSigner.load_or_create(tmp_path)
    assert info.value.code == "token_key_invalid"


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    _write_key(tmp_path, _pem(ec.generate_private_key(ec.SECP256R1())), mode=0o644)
    with pytest.raises(CllmError) as info:
        TokenSigner.load_or_create(tmp_path)
    assert info.value.code == "token_key_invalid"


def test_existing_key_file_is_used(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    _write_key(tmp_path, _pem(key))
    assert TokenSigner.load_or_create(tmp_path).kid == jwk_thumbprint(key.public_key())


# --- time ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "leeway", "code"),
    [
        (NOW + LIFETIME - 1, 0, None),
        (NOW + LIFETIME, 0, "token_expired"),  # RFC 7519: expired *on* or after exp
        (NOW + LIFETIME + 1, 0, "token_expired"),
        (NOW + LIFETIME, 1, None),
        (NOW + LIFETIME + 1, 1, "token_expired"),
        (NOW, 0, None),
        (NOW - 1, 0, "token_not_yet_valid"),
        (NOW - 1, 1, None),
        (NOW - 2, 1, "token_not_yet_valid"),
    ],
)
def test_time_boundaries(now: int, leeway: int, code: str | None) -> None:
    token = _issue()
    if code is None:
        assert verify_token(token, jwks=SIGNER.jwks(), now=now, leeway=leeway)["iat"] == NOW
    else:
        assert _code(token, now=now, leeway=leeway) == code


def _signed(payload: dict[str, Any], **headers: Any) -> str:
    """A genuine ES256 token from SIGNER over an arbitrary payload (no claims added)."""
    return jwt.encode(
        payload, SIGNER.key, algorithm="ES256", headers={"kid": SIGNER.kid, **headers}
    )


def test_nbf_is_honoured() -> None:
    token = _signed(_claims(nbf=NOW + 10))
    assert _code(token, now=NOW + 9) == "token_not_yet_valid"
    assert verify_token(token, jwks=SIGNER.jwks(), now=NOW + 10)["nbf"] == NOW + 10


@pytest.mark.parametrize(
    "payload",
    [
        {"iss": ISSUER, "iat": NOW},  # never expires: refused
        {"iss": ISSUER, "exp": NOW + 10},
        _claims(exp=True),
        _claims(exp=str(NOW + 10)),
        _claims(iat=float(NOW)),
        _claims(nbf="soon"),
        _claims(jti=5),  # PyJWT's own type check on jti
    ],
)
def test_bad_registered_claims_are_malformed(payload: dict[str, Any]) -> None:
    assert _code(_signed(payload)) == "token_malformed"


def test_time_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="leeway"):
        verify_token(_issue(), jwks=SIGNER.jwks(), now=NOW, leeway=-1)


# --- issuer and kid ------------------------------------------------------------------------------


def test_wrong_issuer() -> None:
    assert _code(_issue(), issuer="https://elsewhere.example") == "token_bad_issuer"
    assert _code(_signed({"iat": NOW, "exp": NOW + 1}), issuer=ISSUER) == "token_bad_issuer"


def test_unknown_kid() -> None:
    other_token = OTHER.issue({}, now=NOW, lifetime=LIFETIME, issuer=ISSUER)
    assert _code(other_token) == "token_unknown_kid"
    no_kid = jwt.encode(_claims(), SIGNER.key, algorithm="ES256")
    assert _code(no_kid) == "token_unknown_kid"
    _, payload, signature = _issue().split(".")
    numeric_kid = _json({"alg": "ES256", "kid": 7})
    assert _code(f"{numeric_kid}.{payload}.{signature}") == "token_malformed"


# --- forgeries -----------------------------------------------------------------------------------


def _flip_signature_byte(token: str, index: int) -> str:
    head, payload, signature = token.split(".")
    raw = bytearray(_unb64(signature))
    raw[index] ^= 0x01
    return f"{head}.{payload}.{_b64(bytes(raw))}"


@pytest.mark.parametrize("index", [0, 31, 32, 63])
def test_flipped_signature_byte(index: int) -> None:
    assert _code(_flip_signature_byte(_issue(), index)) == "token_bad_signature"


def test_resigned_with_another_key_under_our_kid() -> None:
    forged = jwt.encode(_claims(), OTHER.key, algorithm="ES256", headers={"kid": SIGNER.kid})
    assert _code(forged) == "token_bad_signature"


def test_payload_swapped_under_a_genuine_signature() -> None:
    head, _, signature = _issue(status="contraindicated").split(".")
    payload = _json(_claims(status="affirming"))
    assert _code(f"{head}.{payload}.{signature}") == "token_bad_signature"


@pytest.mark.parametrize("signature", ["", _b64(b"\x00" * 64), _b64(b"\x01" * 63)])
def test_empty_or_wrong_length_signature(signature: str) -> None:
    head, payload, _ = _issue().split(".")
    assert _code(f"{head}.{payload}.{signature}") == "token_bad_signature"


@pytest.mark.parametrize("signature", ["", _b64(b"sig")])
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none(alg: str, signature: str) -> None:
    head = _json({"alg": alg, "typ": "JWT", "kid": SIGNER.kid})
    assert _code(f"{head}.{_json(_claims())}.{signature}") == "token_bad_algorithm"


def _hs256(secret: bytes) -> str:
    signing_input = f"{_json({'alg': 'HS256', 'typ': 'JWT', 'kid': SIGNER.kid})}.{_json(_claims())}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def test_hs256_with_public_key_as_secret() -> None:
    # The key-confusion attack: a verifier that takes the algorithm from the header would check
    # this HMAC with the public key bytes, which the attacker knows, as the secret.
    public_key = SIGNER.key.public_key()
    for secret in (
        public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        ),
        json.dumps(SIGNER.jwks()["keys"][0]).encode(),
    ):
        assert _code(_hs256(secret)) == "token_bad_algorithm"


@pytest.mark.parametrize(
    "alg", ["HS256", "HS512", "RS256", "PS256", "ES384", "ES512", "ES256K", "EdDSA", "", None, 1]
)
def test_other_algorithms(alg: object) -> None:
    head = _json({"alg": alg, "kid": SIGNER.kid})
    _, payload, signature = _issue().split(".")
    assert _code(f"{head}.{payload}.{signature}") == "token_bad_algorithm"


def test_genuine_signature_with_header_fields_we_do_not_understand() -> None:
    assert _code(_signed(_claims(), crit=["exp"], exp=1)) == "token_malformed"
    # Keys named by the token itself are ignored: only the caller's JWKS counts.
    attacker_jwk = OTHER.jwks()["keys"][0]
    forged = jwt.encode(
        _claims(),
        OTHER.key,
        algorithm="ES256",
        headers={"kid": SIGNER.kid, "jwk": attacker_jwk, "jku": "https://evil.example/jwks"},
    )
    assert _code(forged) == "token_bad_signature"


# --- garbage -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "...",
        "eyJ.eyJ.sig",
        " " + _issue(),
        _issue() + "\n",
        _issue() + ".",
        _issue().replace(".", "..", 1),
        "é.é.é",
        "\x00.\x00.\x00",
        "A" * (64 * 1024 + 1),
        f"{_json([])}.{_json(_claims())}.",
        f"{_json('ES256')}.{_json(_claims())}.",
        f"{_b64(b'{not json')}.{_json(_claims())}.AAAA",
    ],
)
def test_garbage_is_malformed(garbage: str) -> None:
    assert _code(garbage) == "token_malformed"


@pytest.mark.parametrize("payload", [b"[1, 2]", b"not json", b"\xff\xfe"])
def test_unsigned_payload_is_not_read_before_the_signature(payload: bytes) -> None:
    # An acceptable header over junk: the signature fails before the payload is interpreted.
    head = _json({"alg": "ES256", "kid": SIGNER.kid})
    assert _code(f"{head}.{_b64(payload)}.AAAA") == "token_bad_signature"


@pytest.mark.parametrize("payload", [b"[1, 2, 3]", b"not json", b"\xff\xfe", b'"str"'])
def test_signed_non_object_payload_is_malformed(payload: bytes) -> None:
    token = jwt.api_jws.encode(payload, SIGNER.key, algorithm="ES256", headers={"kid": SIGNER.kid})
    assert _code(token) == "token_malformed"


def test_non_string_token_is_malformed() -> None:
    assert _code(_issue().encode()) == "token_malformed"  # type: ignore[arg-type]


_SEGMENTS = r"[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,90}"


@budget(300)
@given(st.text(max_size=300) | st.from_regex(_SEGMENTS, fullmatch=True))
def test_fuzz_only_typed_errors(text: str) -> None:
    with pytest.raises(VerificationError):
        verify_token(text, jwks=SIGNER.jwks(), now=NOW)


# --- no token contents in errors or logs ---------------------------------------------------------


def test_errors_and_logs_do_not_leak_token_contents(caplog: pytest.LogCaptureFixture) -> None:
    nonce = secrets.token_hex(16)
    token = _issue(nonce=nonce)
    tampered = _flip_signature_byte(token, 5)
    caplog.set_level(logging.DEBUG)
    failures = [
        _error(tampered),
        _error(token, now=NOW + LIFETIME),
        _error(token, issuer="other"),
        _error(token, jwks=OTHER.jwks()),
    ]
    payload_segment = token.split(".")[1]
    for failure in failures:
        # The whole chain: a foreign exception's message must not carry contents either.
        chain: list[BaseException] = []
        current: BaseException | None = failure
        while current is not None:
            chain.append(current)
            current = current.__cause__ or current.__context__
        texts = [str(exc) for exc in chain] + [record.getMessage() for record in caplog.records]
        for text in texts:
            assert nonce not in text
            assert payload_segment not in text
            assert ISSUER not in text
