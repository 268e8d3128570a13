"""Test vectors: the committed tests/crypto/vectors.json is exactly what the generator produces,
and everything in it opens and verifies, through the public API and through independent
re-derivations; plus RFC 9180 appendix A.1.1 for our HPKE suite."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cllm.crypto import (
    HpkeKeyPair,
    ResponseOpener,
    SigningKey,
    _hpke,
    _vectors,
    decode_enc_header,
    open_request,
    request_aad,
    verify_answer,
)
from cllm.crypto._chunks import FINAL_FLAG, derive_response_key
from cllm.crypto._hpke import AEAD_ID, HPKE_INFO, KDF_ID, KEM_ID
from cllm.errors import CryptoError

VECTORS_FILE = Path(__file__).with_name("vectors.json")


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    loaded = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _hex(section: dict[str, Any], name: str) -> bytes:
    return bytes.fromhex(section[name])


def test_committed_vectors_are_what_the_generator_produces() -> None:
    # Regenerate with: python -m cllm.crypto._vectors tests/crypto/vectors.json
    assert VECTORS_FILE.read_text(encoding="utf-8") == _vectors.render()


def test_generator_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "vectors.json"
    assert _vectors.main([str(target)]) == 0
    assert target.read_text(encoding="utf-8") == VECTORS_FILE.read_text(encoding="utf-8")
    assert _vectors.main([]) == 0
    assert capsys.readouterr().out == VECTORS_FILE.read_text(encoding="utf-8")
    assert _vectors.main(["a", "b"]) == 2


def test_vector_suite_is_ours(vectors: dict[str, Any]) -> None:
    hpke = vectors["hpke"]
    assert (hpke["mode"], hpke["kem_id"], hpke["kdf_id"], hpke["aead_id"]) == (0, 0x20, 1, 1)
    assert (KEM_ID.value, KDF_ID.value, AEAD_ID.value) == (0x20, 1, 1)
    assert _hex(hpke, "info") == HPKE_INFO == b"cllm/1 request"


def test_vector_request_opens(vectors: dict[str, Any]) -> None:
    hpke, request, response = vectors["hpke"], vectors["request"], vectors["response"]
    key = HpkeKeyPair(x25519.X25519PrivateKey.from_private_bytes(_hex(hpke, "sk_r")))
    assert key.public_bytes() == _hex(hpke, "pk_r")
    enc = decode_enc_header(hpke["enc_header"])
    assert enc == _hex(hpke, "enc")
    # enc is the ephemeral public key (DHKEM's SerializePublicKey(pkE)).
    ephemeral = x25519.X25519PrivateKey.from_private_bytes(_hex(hpke, "sk_e"))
    assert ephemeral.public_key().public_bytes_raw() == enc
    aad = request_aad(request["method"], request["path"])
    assert aad == _hex(request, "aad") == b"POST /v1/chat/completions"
    nonce = _hex(response, "response_nonce")
    body, sealer = open_request(
        key, enc=enc, ciphertext=_hex(request, "ciphertext"), aad=aad, random=lambda n: nonce[:n]
    )
    assert body == _hex(request, "plaintext") == request["plaintext_text"].encode()
    # The server side reproduces the response byte for byte.
    records = response["records"]
    wire = [sealer.start()]
    for record in records:
        seal = sealer.seal_final if record["final"] else sealer.seal
        wire.append(seal(_hex(record, "plaintext")))
    assert wire[1:] == [_hex(record, "wire") for record in records]
    assert b"".join(wire) == _hex(response, "body")


def test_vector_response_opens(vectors: dict[str, Any]) -> None:
    hpke, response = vectors["hpke"], vectors["response"]
    opener = ResponseOpener(_hex(response, "secret"), enc=_hex(hpke, "enc"))
    plaintexts = opener.feed(_hex(response, "body"))
    opener.close()
    assert opener.done
    assert plaintexts == [_hex(record, "plaintext") for record in response["records"]]
    assert b"".join(plaintexts) == _hex(vectors["signature"], "answer_body")


def test_vector_response_keys_rederived_independently(vectors: dict[str, Any]) -> None:
    hpke, response = vectors["hpke"], vectors["response"]
    secret, enc, nonce = (
        _hex(response, "secret"),
        _hex(hpke, "enc"),
        _hex(response, "response_nonce"),
    )
    assert _hex(response, "export_context") == b"cllm/1 response" and len(secret) == 16
    assert _hex(response, "salt") == enc + nonce
    assert hmac.new(enc + nonce, secret, hashlib.sha256).digest() == _hex(response, "prk")
    # Extract-then-Expand with cryptography's one-shot HKDF gives the same key and nonce.
    for name, size in (("key", 16), ("nonce", 12)):
        one_shot = HKDF(hashes.SHA256(), size, salt=enc + nonce, info=name.encode())
        assert one_shot.derive(secret) == _hex(response, name)
    assert derive_response_key(secret, enc=enc, response_nonce=nonce) == (
        _hex(response, "key"),
        _hex(response, "nonce"),
    )
    # Each record: header (final flag | length), then AES-128-GCM under nonce XOR counter.
    aead = AESGCM(_hex(response, "key"))
    base = int.from_bytes(_hex(response, "nonce"), "big")
    for counter, record in enumerate(response["records"]):
        final = record["final"]
        ciphertext = aead.encrypt(
            (base ^ counter).to_bytes(12, "big"),
            _hex(record, "plaintext"),
            b"final" if final else b"",
        )
        header = struct.pack(">I", len(ciphertext) | (FINAL_FLAG if final else 0))
        assert header + ciphertext == _hex(record, "wire")
    assert [record["final"] for record in response["records"]] == [False, False, True]


def test_vector_exporter_secret_matches_the_hpke_context(vectors: dict[str, Any]) -> None:
    hpke, response = vectors["hpke"], vectors["response"]
    key = HpkeKeyPair._derive(_hex(hpke, "ikm_r"))
    assert key.public_bytes() == _hex(hpke, "pk_r")
    context = _hpke._recipient_context(key, _hex(hpke, "enc"), HPKE_INFO)
    assert context.export(b"cllm/1 response", 16) == _hex(response, "secret")
    ephemeral = _hpke._SUITE.kem.derive_key_pair(_hex(hpke, "ikm_e"))
    assert ephemeral.private_key.to_private_bytes() == _hex(hpke, "sk_e")


def test_vector_signature_verifies(vectors: dict[str, Any]) -> None:
    signature, request = vectors["signature"], vectors["request"]
    private = ec.derive_private_key(int(signature["private_scalar"], 16), ec.SECP256R1())
    spki = _hex(signature, "signing_key")
    assert SigningKey(private).public_spki_der() == spki
    body = _hex(signature, "answer_body")
    assert body == signature["answer_text"].encode()
    signed = verify_answer(body, request_body=_hex(request, "plaintext"), signing_key=spki)
    assert signed.request_sha256 == _hex(signature, "request_sha256")
    assert signed.answer_sha256 == _hex(signature, "answer_sha256")
    assert signed.signature == _hex(signature, "sig")
    message = _hex(signature, "signed_message")
    assert message == b"cllm/1 answer-signature\x00" + signed.request_sha256 + signed.answer_sha256
    public = serialization.load_der_public_key(spki)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signed.signature, message, ec.ECDSA(hashes.SHA256()))
    assert body.endswith(b'"}}\n\ndata: [DONE]\n\n')
    with pytest.raises(CryptoError) as caught:
        verify_answer(body, request_body=b"{}", signing_key=spki)
    assert caught.value.code == "signature_request_mismatch"


# RFC 9180 appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, mode_base.
RFC_INFO = bytes.fromhex("4f6465206f6e2061204772656369616e2055726e")  # "Ode on a Grecian Urn"
RFC_IKM_E = bytes.fromhex("7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234")
RFC_SK_E = bytes.fromhex("52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736")
RFC_PK_E = bytes.fromhex("37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431")
RFC_IKM_R = bytes.fromhex("6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037")
RFC_SK_R = bytes.fromhex("4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8")
RFC_PK_R = bytes.fromhex("3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d")
RFC_PT = bytes.fromhex("4265617574792069732074727574682c20747275746820626561757479")
RFC_ENCRYPTIONS = [
    (
        b"Count-0",
        "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a",
    ),
    (
        b"Count-1",
        "af2d7e9ac9ae7e270f46ba1f975be53c09f8d875bdc8535458c2494e8a6eab251c03d0c22a56b8ca42c2063b84",
    ),
]
RFC_EXPORTS = [
    (b"", "3853fe2b4035195a573ffc53856e77058e15d9ea064de3e59f4961d0095250ee"),
    (b"\x00", "2e8f0b54673c7029649d4eb9d5e33bf1872cf76d623ff164ac185da9e88c21a5"),
    (b"TestContext", "e9e43065102c3836401bed8c3c3c75ae46be1639869391d62c61f1ec7af54931"),
]


def test_rfc9180_a_1_1_through_our_hpke_code() -> None:
    recipient = HpkeKeyPair._derive(RFC_IKM_R)
    assert recipient.public_bytes() == RFC_PK_R
    assert recipient._kem_private.to_private_bytes() == RFC_SK_R
    ephemeral = _hpke._SUITE.kem.derive_key_pair(RFC_IKM_E)
    assert ephemeral.private_key.to_private_bytes() == RFC_SK_E

    enc, sender = _hpke._sender_context(RFC_PK_R, RFC_INFO, ephemeral)
    assert enc == RFC_PK_E
    receiver = _hpke._recipient_context(recipient, enc, RFC_INFO)
    for aad, ciphertext in RFC_ENCRYPTIONS:
        assert sender.seal(RFC_PT, aad).hex() == ciphertext
        assert receiver.open(bytes.fromhex(ciphertext), aad) == RFC_PT
    for context, value in RFC_EXPORTS:
        assert sender.export(context, 32).hex() == value
        assert receiver.export(context, 32).hex() == value


def test_protocol_doc_quotes_the_vectors(vectors: dict[str, Any]) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    excerpt = doc.split("<!-- vectors:begin -->")[1].split("<!-- vectors:end -->")[0]
    quoted = {line.split()[0]: line.split()[1] for line in excerpt.splitlines() if " " in line}
    hpke, response = vectors["hpke"], vectors["response"]
    expected = {
        "pk_r": hpke["pk_r"],
        "enc": hpke["enc"],
        "enc_header": hpke["enc_header"],
        "aad": vectors["request"]["aad"],
        **{name: response[name] for name in ("secret", "response_nonce", "prk", "key", "nonce")},
    }
    assert {name: quoted[name] for name in expected} == expected
    headers = [record["wire"][:8] for record in response["records"]]
    assert excerpt.split("record headers")[1].split()[:3] == headers
    assert vectors["signature"]["answer_text"].rstrip("\n") in doc
    assert vectors["request"]["plaintext_text"] in doc
