"""Signed answers: JSON, SSE and NDJSON bodies, in the clear and sealed; every forgery fails."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
from typing import Literal

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from cllm.crypto import (
    SIGNATURE_MARKER,
    AnswerSigner,
    HpkeKeyPair,
    SigningKey,
    open_request,
    request_aad,
    seal_request,
    verify_answer,
)
from cllm.crypto._signing import (
    SIGNATURE_CONTEXT,
    SIGNATURE_MEMBER,
    signature_member,
    signed_message,
)
from cllm.errors import CryptoError
from fuzzing import budget

KEY = SigningKey.generate()
SPKI = KEY.public_spki_der()
OTHER = SigningKey.generate()
REQUEST = b'{"model":"smollm2","messages":[{"role":"user","content":"hi"}],"stream":true}'
FINAL = b'{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'
Framing = Literal["json", "sse", "sse-no-done", "ndjson"]


def _event(text: str) -> bytes:
    return json.dumps({"id": "c1", "choices": [{"index": 0, "delta": {"content": text}}]}).encode()


def _answer(
    framing: Framing = "sse",
    texts: tuple[str, ...] = ("Hel", "lo"),
    *,
    key: SigningKey = KEY,
    request: bytes = REQUEST,
    final: bytes = FINAL,
) -> bytes:
    """An answer body as a server emits it, signed as it goes."""
    signer = key.signer(request_body=request)
    out: list[bytes] = []

    def emit(data: bytes) -> None:
        signer.update(data)
        out.append(data)

    if framing == "json":
        return signer.sign_record(final)
    if framing == "ndjson":
        for text in texts:
            emit(_event(text) + b"\n")
        return b"".join(out) + signer.sign_record(final) + b"\n"
    for text in texts:
        emit(b"data: " + _event(text) + b"\n\n")
    emit(b"data: ")
    tail = b"\n\ndata: [DONE]\n\n" if framing == "sse" else b"\n\n"
    return b"".join(out) + signer.sign_record(final) + tail


def _code(body: bytes, *, request: bytes = REQUEST, signing_key: bytes = SPKI) -> str:
    with pytest.raises(CryptoError) as caught:
        verify_answer(body, request_body=request, signing_key=signing_key)
    return caught.value.code


def _member_of(body: bytes) -> dict[str, str]:
    at = body.rindex(SIGNATURE_MARKER)
    value, _ = json.JSONDecoder().raw_decode(body[at + len(SIGNATURE_MARKER) :].decode())
    assert isinstance(value, dict)
    return value


def _with_member(body: bytes, member: bytes) -> bytes:
    """``body`` with its signature member (from the marker to the member's ``}``) replaced."""
    at = body.rindex(SIGNATURE_MARKER)
    end = body.rindex(b"}}") + 1
    return body[:at] + member + body[end:]


@pytest.mark.parametrize("framing", ["json", "sse", "sse-no-done", "ndjson"])
def test_signed_answer_round_trips(framing: Framing) -> None:
    body = _answer(framing)
    signed = verify_answer(body, request_body=REQUEST, signing_key=SPKI)
    assert signed.answer == body[: body.rindex(SIGNATURE_MARKER)]
    assert signed.request_sha256 == hashlib.sha256(REQUEST).digest()
    assert signed.answer_sha256 == hashlib.sha256(signed.answer).digest()
    message = signed_message(signed.request_sha256, signed.answer_sha256)
    assert message == SIGNATURE_CONTEXT + signed.request_sha256 + signed.answer_sha256
    assert SIGNATURE_CONTEXT == b"cllm/1 answer-signature\x00"
    public = serialization.load_der_public_key(SPKI)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signed.signature, message, ec.ECDSA(hashes.SHA256()))


def test_signed_record_is_still_json_with_the_member_last() -> None:
    body = _answer("json")
    record = json.loads(body)
    assert list(record)[-1] == SIGNATURE_MEMBER
    member = record.pop(SIGNATURE_MEMBER)
    assert record == json.loads(FINAL)
    assert list(member) == ["alg", "request_sha256", "answer_sha256", "sig"]
    assert member["alg"] == "ecdsa-p256-sha256"
    assert member["request_sha256"] == hashlib.sha256(REQUEST).hexdigest()
    assert body.startswith(FINAL[:-1] + b',"cllm_signature":{"alg":"ecdsa-p256-sha256",')


def test_sse_and_ndjson_events_stay_parseable() -> None:
    events = _answer("sse").split(b"\n\n")
    assert events[-2:] == [b"data: [DONE]", b""]
    for event in events[:-2]:
        assert event.startswith(b"data: ")
        json.loads(event[len(b"data: ") :])
    lines = _answer("ndjson").split(b"\n")
    assert lines[-1] == b""
    assert [SIGNATURE_MEMBER in json.loads(line) for line in lines[:-1]] == [False, False, True]


def test_signature_member_bytes() -> None:
    member = signature_member(
        request_sha256=b"\x01" * 32, answer_sha256=b"\x02" * 32, signature=b"s"
    )
    assert member == (
        b',"cllm_signature":{"alg":"ecdsa-p256-sha256","request_sha256":"' + b"01" * 32 + b'",'
        b'"answer_sha256":"' + b"02" * 32 + b'","sig":"cw=="}'
    )


def test_model_text_cannot_forge_the_member() -> None:
    forged = ',"cllm_signature":{"alg":"ecdsa-p256-sha256","sig":"x"}}\n\ndata: [DONE]\n\n'
    texts = (forged, '"}', "\\", forged + '"' + forged)
    for framing in ("json", "sse", "ndjson"):
        final = json.dumps({"id": "c1", "content": forged}).encode()
        body = _answer(framing, texts, final=final)
        # JSON escapes every quote inside a string, so the marker occurs exactly once.
        assert body.count(SIGNATURE_MARKER) == 1
        signed = verify_answer(body, request_body=REQUEST, signing_key=SPKI)
        assert forged.encode() not in signed.answer
        assert json.dumps(forged).encode() in signed.answer


def test_modified_answer_byte_fails() -> None:
    body = _answer("sse")
    at = body.rindex(SIGNATURE_MARKER)
    for position in range(at):
        tampered = bytearray(body)
        tampered[position] ^= 0x01
        assert _code(bytes(tampered)) == "signature_invalid"
    # Dropping, adding or reordering events changes the answer too.
    assert _code(body[body.index(b"\n\n") + 2 :]) == "signature_invalid"
    assert _code(b"data: {}\n\n" + body) == "signature_invalid"


def test_answer_to_another_request_fails() -> None:
    body = _answer("json")
    for request in (REQUEST + b" ", b"", REQUEST.replace(b"hi", b"ho")):
        assert _code(body, request=request) == "signature_request_mismatch"


def test_wrong_key_fails() -> None:
    body = _answer("sse")
    assert _code(body, signing_key=OTHER.public_spki_der()) == "signature_invalid"
    assert _code(_answer("sse", key=OTHER)) == "signature_invalid"


def test_substituted_signature_fails() -> None:
    body = _answer("json")
    member = _member_of(body)
    # A genuine signature by the right key, over another answer, does not carry over.
    other = _member_of(_answer("json", ("x",), final=b'{"other":1}'))
    swapped = signature_member(
        request_sha256=bytes.fromhex(member["request_sha256"]),
        answer_sha256=bytes.fromhex(member["answer_sha256"]),
        signature=base64.b64decode(other["sig"]),
    )
    assert _code(_with_member(body, swapped)) == "signature_invalid"
    # Claimed hashes that do not match the bytes received.
    for claimed_request, claimed_answer, code in [
        (b"\x00" * 32, bytes.fromhex(member["answer_sha256"]), "signature_request_mismatch"),
        (bytes.fromhex(member["request_sha256"]), b"\x00" * 32, "signature_invalid"),
    ]:
        forged = signature_member(
            request_sha256=claimed_request,
            answer_sha256=claimed_answer,
            signature=base64.b64decode(member["sig"]),
        )
        assert _code(_with_member(body, forged)) == code


@pytest.mark.parametrize(
    "tail",
    [
        b"}\n\ndata: [DONE]\n\n\n",
        b"}\n\ndata: [DONE]\n",
        b"}\n\nx",
        b"}\r\n",
        b"} ",
        b" }",
        b"}}",
        b"",
        b"\n",
        b"}\n\ndata: {}\n\n",
        b"}" + b"\n" * 2000,
    ],
)
def test_extra_tail_fails(tail: bytes) -> None:
    body = _answer("json")
    assert _code(body[:-1] + tail) == "signature_trailing_data"


def test_unsigned_record_after_the_signed_one_fails() -> None:
    body = _answer("ndjson") + b'{"done":true}\n'
    assert _code(body) == "signature_trailing_data"


@pytest.mark.parametrize("framing", ["json", "sse", "ndjson"])
def test_missing_signature(framing: Framing) -> None:
    body = _answer(framing)
    unsigned = _with_member(body, b"")
    assert SIGNATURE_MEMBER.encode() not in unsigned
    assert _code(unsigned) == "signature_missing"
    assert _code(b"") == "signature_missing"
    assert _code(b'{"cllm_signature":{}}') == "signature_missing"  # first member: no comma


@pytest.mark.parametrize(
    "member",
    [
        b"[]",
        b"{",
        b'"text"',
        b"{}",
        b'{"alg":"ecdsa-p384-sha384","request_sha256":"R","answer_sha256":"A","sig":"S"}',
        b'{"alg":"ecdsa-p256-sha256","request_sha256":"R","answer_sha256":"A"}',
        b'{"alg":"ecdsa-p256-sha256","request_sha256":"R","answer_sha256":"A","sig":"S","x":1}',
        b'{"alg":"ecdsa-p256-sha256","request_sha256":"R","answer_sha256":"A","sig":1}',
        b'{"alg":"ecdsa-p256-sha256","request_sha256":"R","answer_sha256":"A","sig":"!!"}',
        b'{"alg":"ecdsa-p256-sha256","request_sha256":"R","answer_sha256":"A","sig":"AAAA"}',
        # valid content, not in canonical form
        b'{"alg": "ecdsa-p256-sha256","request_sha256":"R","answer_sha256":"A","sig":"S"}',
        b'{"request_sha256":"R","alg":"ecdsa-p256-sha256","answer_sha256":"A","sig":"S"}',
        b'{"alg":"ecdsa-p256-sha256","alg":"ecdsa-p256-sha256","request_sha256":"R",'
        b'"answer_sha256":"A","sig":"S"}',
        b'{"alg":"ecdsa-p256-sha256","request_sha256":"R","answer_sha256":"A","sig":"S"\n}',
        b'{"alg":"ecdsa\\u002dp256-sha256","request_sha256":"R","answer_sha256":"A","sig":"S"}',
        b"\xff\xfe",
    ],
)
def test_malformed_member_fails(member: bytes) -> None:
    body = _answer("json")
    value = _member_of(body)
    sig = value["sig"]
    member = (
        member.replace(b'"R"', f'"{value["request_sha256"]}"'.encode())
        .replace(b'"A"', f'"{value["answer_sha256"]}"'.encode())
        .replace(b'"S"', f'"{sig}"'.encode())
    )
    assert _code(_with_member(body, SIGNATURE_MARKER + member)) == "signature_malformed"


def test_malformed_hashes_and_signature_encodings_fail() -> None:
    body = _answer("json")
    value = _member_of(body)
    variants = [
        {**value, "request_sha256": value["request_sha256"].upper()},
        {**value, "answer_sha256": value["answer_sha256"][:-2]},
        {**value, "sig": value["sig"] + "="},  # excess padding
        {**value, "sig": value["sig"][:-4]},  # DER cut short
        {**value, "sig": base64.urlsafe_b64encode(b"\xfb" * 70).decode()},
        {**value, "sig": base64.b64encode(b"\x30\x03\x02\x01\x01").decode()},  # truncated DER
    ]
    if value["sig"].endswith("="):
        variants.append({**value, "sig": value["sig"].rstrip("=")})  # unpadded base64
    for variant in variants:
        member = SIGNATURE_MARKER + json.dumps(variant, separators=(",", ":")).encode()
        assert _code(_with_member(body, member)) == "signature_malformed"


def test_unusable_signing_key_fails() -> None:
    body = _answer("json")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    for key in (
        b"",
        b"not der",
        SPKI[:-1],
        rsa_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        p384.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ):
        assert _code(body, signing_key=key) == "signing_key_invalid"


def test_signer_misuse() -> None:
    signer = KEY.signer(request_body=REQUEST)
    for record in (b"{}", b"[1]", b'{"a":1', b'{"a":1} ', b"", b"{ }", b'{"a":}'):
        with pytest.raises(ValueError, match="final record"):
            signer.sign_record(record)
    signer.sign_record(b'{"a":1}')
    for action in (lambda: signer.sign_record(b'{"a":1}'), lambda: signer.update(b"x")):
        with pytest.raises(CryptoError) as caught:
            action()
        assert caught.value.code == "answer_signer_state"
    with pytest.raises(ValueError, match="P-256"):
        AnswerSigner(ec.generate_private_key(ec.SECP384R1()), request_body=b"")
    with pytest.raises(ValueError, match="P-256"):
        SigningKey(ec.generate_private_key(ec.SECP521R1()))


def test_signer_from_a_plain_private_key() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    signer = AnswerSigner(private, request_body=REQUEST)
    body = signer.sign_record(FINAL) + b"\n"
    key = SigningKey(private)
    assert key.private_key is private
    spki = key.public_spki_der()
    assert verify_answer(body, request_body=REQUEST, signing_key=spki).answer == FINAL[:-1]


def test_signatures_are_randomised_and_all_verify() -> None:
    first, second = _answer("json"), _answer("json")
    assert first != second  # fresh ECDSA nonce per signature
    for body in (first, second):
        verify_answer(body, request_body=REQUEST, signing_key=SPKI)


def test_keys_are_not_shown_or_pickled() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    key = SigningKey(private)
    scalar = f"{private.private_numbers().private_value:x}"
    assert scalar not in repr(key) and scalar not in repr(key.signer(request_body=b""))
    for holder in (key, key.signer(request_body=b"")):
        with pytest.raises(TypeError, match="never serialised"):
            pickle.dumps(holder)


def test_signed_answer_inside_the_sealed_channel() -> None:
    hpke = HpkeKeyPair.generate()
    aad = request_aad("POST", "/v1/chat/completions")
    sealed = seal_request(hpke.public_bytes(), REQUEST, aad=aad)
    request, sealer = open_request(hpke, enc=sealed.enc, ciphertext=sealed.ciphertext, aad=aad)
    signer = KEY.signer(request_body=request)
    wire = [sealer.start()]
    for text in ("Hel", "lo"):
        event = b"data: " + _event(text) + b"\n\n"
        signer.update(event)
        wire.append(sealer.seal(event))
    signer.update(b"data: ")
    wire.append(sealer.seal_final(b"data: " + signer.sign_record(FINAL) + b"\n\ndata: [DONE]\n\n"))
    stream = b"".join(wire)
    assert SIGNATURE_MARKER not in stream and b"cllm_signature" not in stream
    body = sealed.open_response(stream)
    signed = verify_answer(body, request_body=REQUEST, signing_key=SPKI)
    assert signed.answer.startswith(b"data: ")


@budget(100)
@given(
    texts=st.lists(st.text(max_size=40), max_size=5),
    final_text=st.text(max_size=40),
    framing=st.sampled_from(["json", "sse", "sse-no-done", "ndjson"]),
    request=st.binary(max_size=200),
)
def test_any_model_text_verifies(
    texts: list[str], final_text: str, framing: Framing, request: bytes
) -> None:
    final = json.dumps({"content": final_text, "done": True}, ensure_ascii=False).encode()
    body = _answer(framing, tuple(texts), request=request, final=final)
    signed = verify_answer(body, request_body=request, signing_key=SPKI)
    assert signed.answer == body[: body.rindex(SIGNATURE_MARKER)]
    assert body.count(SIGNATURE_MARKER) == 1
