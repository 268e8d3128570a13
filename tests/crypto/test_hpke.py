"""Sealed requests (HPKE) and sealed response streams: round trips, and every tampering."""

from __future__ import annotations

import itertools
import pickle
import struct
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519
from hypothesis import given
from hypothesis import strategies as st

from cllm.crypto import (
    ENC_HEADER,
    ENCRYPTION_HEADER,
    REQUEST_CONTENT_TYPE,
    HpkeKeyPair,
    ResponseOpener,
    ResponseSealer,
    SealedRequest,
    decode_enc_header,
    open_request,
    request_aad,
    seal_request,
)
from cllm.crypto._chunks import FINAL_FLAG, MAX_RECORD_SIZE, RESPONSE_NONCE_SIZE, TAG_SIZE
from cllm.crypto._hpke import encode_enc_header
from cllm.errors import CryptoError
from fuzzing import budget

KEY = HpkeKeyPair.generate()
OTHER_KEY = HpkeKeyPair.generate()
AAD = request_aad("POST", "/v1/chat/completions")
BODY = b'{"model":"smollm2","messages":[{"role":"user","content":"hello"}],"stream":true}'
CHUNKS = (b"data: one\n\n", b"data: two\n\n", b"data: three\n\n")
FINAL = b"data: [DONE]\n\n"
# X25519 points of small order: every clamped scalar maps them to the all-zero output.
SMALL_ORDER = (bytes(32), b"\x01" + bytes(31))


def _request(body: bytes = BODY) -> tuple[SealedRequest, ResponseSealer]:
    sealed = seal_request(KEY.public_bytes(), body, aad=AAD)
    opened, sealer = open_request(KEY, enc=sealed.enc, ciphertext=sealed.ciphertext, aad=AAD)
    assert opened == body
    return sealed, sealer


def _response(
    chunks: tuple[bytes, ...] = CHUNKS, final: bytes = FINAL
) -> tuple[SealedRequest, bytes, list[bytes]]:
    """A sealed request, the response nonce and the framed response records."""
    sealed, sealer = _request()
    nonce = sealer.start()
    records = [sealer.seal(chunk) for chunk in chunks] + [sealer.seal_final(final)]
    return sealed, nonce, records


def _open(sealed: SealedRequest, stream: bytes) -> list[bytes]:
    opener = sealed.opener()
    plaintexts = opener.feed(stream)
    opener.close()
    return plaintexts


def _code(sealed: SealedRequest, stream: bytes) -> str:
    with pytest.raises(CryptoError) as caught:
        _open(sealed, stream)
    return caught.value.code


# -- requests --


def test_request_round_trip_with_headers() -> None:
    sealed = seal_request(KEY.public_bytes(), BODY, aad=AAD)
    headers = sealed.headers()
    assert headers == {
        "X-Cllm-Encryption": "hpke-v1",
        "X-Cllm-Hpke-Enc": encode_enc_header(sealed.enc),
        "Content-Type": "application/cllm-hpke",
    }
    assert ENCRYPTION_HEADER in headers and headers["Content-Type"] == REQUEST_CONTENT_TYPE
    enc = decode_enc_header(headers[ENC_HEADER])
    assert enc == sealed.enc and len(enc) == 32
    assert "=" not in headers[ENC_HEADER] and "+" not in headers[ENC_HEADER]
    body, _ = open_request(KEY, enc=enc, ciphertext=sealed.ciphertext, aad=AAD)
    assert body == BODY
    assert BODY not in sealed.ciphertext and len(sealed.ciphertext) == len(BODY) + TAG_SIZE


def test_empty_request_body_round_trips() -> None:
    sealed, _ = _request(b"")
    assert len(sealed.ciphertext) == TAG_SIZE


def test_every_request_uses_a_fresh_ephemeral_key() -> None:
    first = seal_request(KEY.public_bytes(), BODY, aad=AAD)
    second = seal_request(KEY.public_bytes(), BODY, aad=AAD)
    assert first.enc != second.enc and first.ciphertext != second.ciphertext


def test_request_aad_is_method_space_path() -> None:
    assert AAD == b"POST /v1/chat/completions"
    assert request_aad("POST", "/api/chat?stream=1") == b"POST /api/chat"
    assert request_aad("GET", "/") == b"GET /"
    for method, path in [("", "/x"), ("PO ST", "/x"), ("POST", "v1/x"), ("POST", "https://h/x")]:
        with pytest.raises(ValueError, match="not an"):
            request_aad(method, path)


@pytest.mark.parametrize(
    "aad",
    [
        b"POST /api/chat",
        b"POST /v1/completions",
        b"PUT /v1/chat/completions",
        b"POST /v1/chat/completions/",
        b"",
    ],
)
def test_sealed_body_does_not_open_on_another_route(aad: bytes) -> None:
    sealed = seal_request(KEY.public_bytes(), BODY, aad=AAD)
    with pytest.raises(CryptoError) as caught:
        open_request(KEY, enc=sealed.enc, ciphertext=sealed.ciphertext, aad=aad)
    assert caught.value.code == "hpke_open_failed"


def test_request_for_another_key_does_not_open() -> None:
    sealed = seal_request(OTHER_KEY.public_bytes(), BODY, aad=AAD)
    with pytest.raises(CryptoError) as caught:
        open_request(KEY, enc=sealed.enc, ciphertext=sealed.ciphertext, aad=AAD)
    assert caught.value.code == "hpke_open_failed"


def test_request_with_another_enc_does_not_open() -> None:
    sealed = seal_request(KEY.public_bytes(), BODY, aad=AAD)
    other = seal_request(KEY.public_bytes(), BODY, aad=AAD)
    with pytest.raises(CryptoError) as caught:
        open_request(KEY, enc=other.enc, ciphertext=sealed.ciphertext, aad=AAD)
    assert caught.value.code == "hpke_open_failed"


def test_tampered_request_ciphertext_does_not_open() -> None:
    sealed = seal_request(KEY.public_bytes(), BODY, aad=AAD)
    for position in range(len(sealed.ciphertext)):
        tampered = bytearray(sealed.ciphertext)
        tampered[position] ^= 0x01
        with pytest.raises(CryptoError) as caught:
            open_request(KEY, enc=sealed.enc, ciphertext=bytes(tampered), aad=AAD)
        assert caught.value.code == "hpke_open_failed"
    for cut in (b"", sealed.ciphertext[: TAG_SIZE - 1], sealed.ciphertext[:-1]):
        with pytest.raises(CryptoError) as caught:
            open_request(KEY, enc=sealed.enc, ciphertext=cut, aad=AAD)
        assert caught.value.code == "hpke_open_failed"


@pytest.mark.parametrize("enc", [b"", bytes(31), bytes(33), *SMALL_ORDER])
def test_unusable_enc_is_refused(enc: bytes) -> None:
    sealed = seal_request(KEY.public_bytes(), BODY, aad=AAD)
    with pytest.raises(CryptoError) as caught:
        open_request(KEY, enc=enc, ciphertext=sealed.ciphertext, aad=AAD)
    assert caught.value.code == "hpke_enc_invalid"


@pytest.mark.parametrize("public_key", [b"", bytes(31), bytes(65), *SMALL_ORDER])
def test_unusable_public_key_is_refused(public_key: bytes) -> None:
    with pytest.raises(CryptoError) as caught:
        seal_request(public_key, BODY, aad=AAD)
    assert caught.value.code == "hpke_enc_invalid"


@pytest.mark.parametrize(
    "value",
    [
        "",
        encode_enc_header(bytes(31)),
        encode_enc_header(bytes(33)),
        encode_enc_header(bytes(range(32))) + "=",  # padded
        "+" + encode_enc_header(bytes(range(32)))[1:],  # standard, not URL-safe, alphabet
        " " + encode_enc_header(bytes(range(32)))[1:],
        encode_enc_header(bytes(range(32)))[:-1] + "B",  # non-zero unused bits: non-canonical
    ],
)
def test_malformed_enc_header_is_refused(value: str) -> None:
    with pytest.raises(CryptoError) as caught:
        decode_enc_header(value)
    assert caught.value.code == "hpke_enc_invalid"


def test_enc_header_round_trips() -> None:
    for enc in (bytes(32), bytes(range(32)), b"\xff" * 32):
        text = encode_enc_header(enc)
        assert len(text) == 43 and decode_enc_header(text) == enc


def test_keys_are_not_shown_or_pickled() -> None:
    private = x25519.X25519PrivateKey.generate()
    pair = HpkeKeyPair(private)
    secret = private.private_bytes_raw().hex()
    assert pair.public_bytes() == private.public_key().public_bytes_raw()
    assert secret not in repr(pair) and pair.public_bytes().hex() in repr(pair)
    sealed, sealer = _request()
    opener = sealed.opener()
    assert sealed._response_secret.hex() not in repr(sealed)
    for secret_holder in (pair, sealer, opener):
        with pytest.raises(TypeError, match="never serialised"):
            pickle.dumps(secret_holder)
    assert not hasattr(pair, "__dict__")


# -- responses --


def test_one_byte_response_round_trips() -> None:
    sealed, sealer = _request()
    stream = sealer.start() + sealer.seal_final(b"x")
    assert _open(sealed, stream) == [b"x"]
    assert len(stream) == RESPONSE_NONCE_SIZE + 4 + 1 + TAG_SIZE


def test_empty_final_record_round_trips() -> None:
    sealed, sealer = _request()
    stream = sealer.start() + sealer.seal(b"") + sealer.seal(b"a") + sealer.seal_final()
    assert _open(sealed, stream) == [b"", b"a", b""]


def test_multi_record_response_all_at_once_and_byte_by_byte() -> None:
    sealed, nonce, records = _response()
    stream = nonce + b"".join(records)
    assert _open(sealed, stream) == [*CHUNKS, FINAL]

    opener = sealed.opener()
    seen: list[bytes] = []
    for position in range(len(stream)):
        seen += opener.feed(stream[position : position + 1])
        # A record is handed over as soon as its last byte arrives, not later.
        complete = [
            i
            for i in range(len(records))
            if len(nonce) + sum(map(len, records[: i + 1])) <= position + 1
        ]
        assert len(seen) == len(complete)
        assert opener.done == (position == len(stream) - 1)
    opener.close()
    assert seen == [*CHUNKS, FINAL]
    assert opener.feed(b"") == []


def test_record_wire_format() -> None:
    _, nonce, records = _response()
    assert len(nonce) == RESPONSE_NONCE_SIZE
    for i, (record, plaintext) in enumerate(zip(records, [*CHUNKS, FINAL], strict=True)):
        (header,) = struct.unpack(">I", record[:4])
        assert header & 0x7FFF_FFFF == len(record) - 4 == len(plaintext) + TAG_SIZE
        assert bool(header & FINAL_FLAG) == (i == len(records) - 1)
        assert plaintext not in record


def test_bit_flip_in_any_record_fails() -> None:
    sealed, nonce, records = _response()
    for index, record in enumerate(records):
        for position in range(4, len(record)):  # every ciphertext and tag byte
            tampered = bytearray(record)
            tampered[position] ^= 0x80
            stream = nonce + b"".join([*records[:index], bytes(tampered), *records[index + 1 :]])
            assert _code(sealed, stream) == "response_chunk_invalid"


def test_tampered_response_nonce_fails() -> None:
    sealed, nonce, records = _response()
    for position in range(len(nonce)):
        tampered = bytearray(nonce)
        tampered[position] ^= 0x01
        assert _code(sealed, bytes(tampered) + b"".join(records)) == "response_chunk_invalid"


def test_reordered_records_fail() -> None:
    sealed, nonce, records = _response()
    a, b, c, final = records
    for order in ([b, a, c, final], [a, c, b, final], [c, b, a, final]):
        assert _code(sealed, nonce + b"".join(order)) == "response_chunk_invalid"


def test_dropped_record_fails() -> None:
    sealed, nonce, records = _response()
    for index in range(len(records) - 1):
        stream = nonce + b"".join(records[:index] + records[index + 1 :])
        assert _code(sealed, stream) == "response_chunk_invalid"
    # Dropping the final record leaves a stream that ends too early.
    assert _code(sealed, nonce + b"".join(records[:-1])) == "response_truncated"


def test_replayed_record_fails() -> None:
    sealed, nonce, records = _response()
    a, b, c, final = records
    for stream in ([a, a, b, c, final], [a, b, b, c, final], [a, b, c, c, final]):
        assert _code(sealed, nonce + b"".join(stream)) == "response_chunk_invalid"
    # A record from another response (another request's keys) does not open either.
    _, other_nonce, other_records = _response()
    assert _code(sealed, other_nonce + b"".join(other_records)) == "response_chunk_invalid"
    assert _code(sealed, nonce + other_records[0]) == "response_chunk_invalid"


def test_flipped_final_flag_fails() -> None:
    sealed, nonce, records = _response()
    for index, record in enumerate(records):
        flipped = bytes([record[0] ^ 0x80]) + record[1:]
        stream = nonce + b"".join([*records[:index], flipped, *records[index + 1 :]])
        assert _code(sealed, stream) == "response_chunk_invalid"


def test_truncation_at_every_offset_is_detected() -> None:
    sealed, nonce, records = _response()
    stream = nonce + b"".join(records)
    for cut in range(len(stream)):
        opener = sealed.opener()
        plaintexts = opener.feed(stream[:cut])  # a prefix never fails by itself
        assert plaintexts == list(CHUNKS[: len(plaintexts)])
        assert not opener.done
        with pytest.raises(CryptoError) as caught:
            opener.close()
        expected = "response_nonce_missing" if cut < RESPONSE_NONCE_SIZE else "response_truncated"
        assert caught.value.code == expected


def test_bytes_after_the_final_record_fail() -> None:
    sealed, nonce, records = _response()
    stream = nonce + b"".join(records)
    for extra in (b"\x00", b"x", records[-1], records[0]):
        assert _code(sealed, stream + extra) == "response_trailing_data"
        opener = sealed.opener()
        assert opener.feed(stream) == [*CHUNKS, FINAL]
        with pytest.raises(CryptoError) as caught:
            opener.feed(extra)
        assert caught.value.code == "response_trailing_data"


def test_failed_opener_stays_failed() -> None:
    sealed, nonce, records = _response()
    opener = sealed.opener()
    tampered = bytes([records[0][0] ^ 0x80]) + records[0][1:]
    with pytest.raises(CryptoError):
        opener.feed(nonce + tampered)
    for action in (lambda: opener.feed(b"".join(records[1:])), opener.close):
        with pytest.raises(CryptoError) as caught:
            action()
        assert caught.value.code == "response_chunk_invalid"


@pytest.mark.parametrize(
    ("length", "code"),
    [
        (0x7FFF_FFFF, "response_record_too_large"),
        (MAX_RECORD_SIZE + 1, "response_record_too_large"),
        (0xFFFF_FFFF, "response_record_too_large"),  # with the final flag
        (0, "response_chunk_invalid"),
        (TAG_SIZE - 1, "response_chunk_invalid"),
    ],
)
def test_hostile_length_header_fails_before_buffering(length: int, code: str) -> None:
    sealed, nonce, _ = _response()
    opener = sealed.opener()
    with pytest.raises(CryptoError) as caught:
        opener.feed(nonce + struct.pack(">I", length))  # header only: judged at once
    assert caught.value.code == code


def test_record_of_the_maximum_size_round_trips() -> None:
    sealed, sealer = _request()
    body = b"\xab" * (MAX_RECORD_SIZE - TAG_SIZE + 1)
    stream = sealer.seal_body(body)
    plaintexts = _open(sealed, stream)
    assert [len(p) for p in plaintexts] == [MAX_RECORD_SIZE - TAG_SIZE, 1]
    assert b"".join(plaintexts) == body


def test_sealer_refuses_oversized_record() -> None:
    _, sealer = _request()
    sealer.start()
    with pytest.raises(CryptoError) as caught:
        sealer.seal(bytes(MAX_RECORD_SIZE - TAG_SIZE + 1))
    assert caught.value.code == "response_record_too_large"


def test_sealer_refuses_after_final_and_before_start() -> None:
    _, sealer = _request()
    with pytest.raises(CryptoError) as caught:
        sealer.seal(b"x")
    assert caught.value.code == "response_sealer_state"
    sealer.start()
    with pytest.raises(CryptoError) as caught:
        sealer.start()
    assert caught.value.code == "response_sealer_state"
    sealer.seal(b"x")
    sealer.seal_final(b"y")
    assert sealer.finished
    actions: list[Callable[[], bytes]] = [
        lambda: sealer.seal(b"z"),
        lambda: sealer.seal_final(b"z"),
        sealer.seal_final,
    ]
    for action in actions:
        with pytest.raises(CryptoError) as caught:
            action()
        assert caught.value.code == "response_sealer_state"


def test_seal_body_and_open_response() -> None:
    sealed, sealer = _request()
    assert sealed.open_response(sealer.seal_body(b'{"ok":true}')) == b'{"ok":true}'


def test_response_nonce_comes_from_the_random_source() -> None:
    sealed = seal_request(KEY.public_bytes(), BODY, aad=AAD)
    calls: list[int] = []

    def fixed(size: int) -> bytes:
        calls.append(size)
        return b"\x42" * size

    _, sealer = open_request(
        KEY, enc=sealed.enc, ciphertext=sealed.ciphertext, aad=AAD, random=fixed
    )
    assert calls == [RESPONSE_NONCE_SIZE] and sealer.start() == b"\x42" * 16
    # Two responses to two requests never share keys, even with the same nonce.
    _, first = open_request(
        KEY, enc=sealed.enc, ciphertext=sealed.ciphertext, aad=AAD, random=fixed
    )
    other = seal_request(KEY.public_bytes(), BODY, aad=AAD)
    _, second = open_request(KEY, enc=other.enc, ciphertext=other.ciphertext, aad=AAD, random=fixed)
    first.start()
    second.start()
    assert first.seal(b"same") != second.seal(b"same")


def test_opener_can_be_built_from_secret_and_enc() -> None:
    sealed, nonce, records = _response()
    opener = ResponseOpener(sealed._response_secret, enc=sealed.enc)
    assert opener.feed(nonce + b"".join(records)) == [*CHUNKS, FINAL]


@budget(150)
@given(
    chunks=st.lists(st.binary(max_size=300), max_size=8),
    final=st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_random_chunkings_open_to_exactly_the_plaintexts(
    chunks: list[bytes], final: bytes, cuts: list[int]
) -> None:
    sealed, sealer = _request()
    stream = sealer.start() + b"".join(sealer.seal(c) for c in chunks) + sealer.seal_final(final)
    points = sorted({cut % (len(stream) + 1) for cut in cuts} | {0, len(stream)})
    opener = sealed.opener()
    seen: list[bytes] = []
    for start, end in itertools.pairwise(points):
        seen += opener.feed(stream[start:end])
    opener.close()
    assert seen == [*chunks, final]
    assert opener.done


def test_altered_length_field_fails() -> None:
    sealed, nonce, records = _response()
    for index, record in enumerate(records):
        for bit in range(31):  # every length bit (bit 31 is the final flag, tested above)
            header = struct.unpack(">I", record[:4])[0] ^ (1 << bit)
            tampered = struct.pack(">I", header) + record[4:]
            stream = nonce + b"".join([*records[:index], tampered, *records[index + 1 :]])
            assert _code(sealed, stream) in {
                "response_chunk_invalid",  # a shorter record, or one swallowing the next
                "response_truncated",  # a longer record that never completes
                "response_record_too_large",
            }
