"""The attestation request is decoded and validated by hand (parse_attestation_request), once,
instead of through a FastAPI body parameter: these tests pin that the two answer every request
alike (status and body), and that the service's answer and OpenAPI schema are what FastAPI
produced before."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from cllm.verifier import AttestationRequest
from cllm.verifier._app import parse_attestation_request

NONCE = "ab" * 32


def _reference_app() -> FastAPI:
    app = FastAPI()

    @app.post("/r")
    async def by_fastapi(body: AttestationRequest) -> dict[str, Any]:
        return body.model_dump()

    @app.post("/h")
    async def by_hand(request: Request) -> dict[str, Any]:
        body = parse_attestation_request(await request.body(), request.headers.get("content-type"))
        return body.model_dump()

    return app


CLIENT = TestClient(_reference_app(), raise_server_exceptions=False)


def _both(content: bytes, content_type: str | None) -> tuple[Any, Any]:
    headers = {"content-type": content_type} if content_type is not None else {}
    answers = []
    for path in ("/r", "/h"):
        response = CLIENT.post(path, content=content, headers=headers)
        answers.append((response.status_code, response.headers["content-type"], response.text))
    return answers[0], answers[1]


GOOD = json.dumps({"evidence": {"version": 1}, "nonce": NONCE}).encode()
CASES = [
    (b"", "application/json"),
    (b"", None),
    (b"{nope", "application/json"),
    (b"{nope", None),
    (b"[]", "application/json"),
    (b"null", "application/json"),
    (b"1", "application/json"),
    (b'"x"', "application/json"),
    (b"\xff\xfe{", "application/json"),
    (b'{"evidence": {}, "nonce": "\xff"}', "application/json"),
    (b'{"evidence": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json"),
    (b'{"evidence": {"a": NaN}, "nonce": "' + NONCE.encode() + b'"}', "application/json"),
    (b'{"nonce": 1, "evidence": {}, "nonce": "' + NONCE.encode() + b'"}', "application/json"),
    (json.dumps({"evidence": {}, "nonce": NONCE}).encode("utf-16"), "application/json"),
    (GOOD, "application/json"),
    (GOOD, None),
    (GOOD, "application/json; charset=utf-8"),
    (GOOD, "Application/JSON"),
    (GOOD, "application/ld+json"),
    (GOOD, "application/jsonx"),
    (GOOD, "text/plain"),
    (GOOD, "text/json"),
    (GOOD, "multipart/form-data; boundary=x"),
    (GOOD, ""),
    (json.dumps({"evidence": {}}).encode(), "application/json"),
    (json.dumps({"evidence": [], "nonce": NONCE}).encode(), "application/json"),
    (json.dumps({"evidence": {}, "nonce": "zz"}).encode(), "application/json"),
    (json.dumps({"evidence": {}, "nonce": NONCE, "x": 1}).encode(), "application/json"),
    (json.dumps({"evidence": {}, "nonce": NONCE, "policy": "p" * 65}).encode(), None),
    (json.dumps({"evidence": {}, "nonce": NONCE, "policy": None}).encode(), None),
    (json.dumps({"evidence": {}, "nonce": NONCE, "policy": 7}).encode(), None),
    (json.dumps({"evidence": None, "nonce": None, "policy": []}).encode(), None),
]


@pytest.mark.parametrize(("content", "content_type"), CASES)
def test_same_answer_as_a_fastapi_body_parameter(content: bytes, content_type: str | None) -> None:
    reference, by_hand = _both(content, content_type)
    assert by_hand == reference


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_bodies = st.fixed_dictionaries(
    {},
    optional={
        "evidence": _json,
        "nonce": st.sampled_from([NONCE, NONCE.upper(), "ab", ""]) | _json,
        "policy": st.sampled_from(["default", "x" * 64, "x" * 65]) | _json,
        "extra": _json,
    },
)


@settings(max_examples=150, deadline=None)
@given(_bodies | _json)
def test_same_answer_for_any_json(value: Any) -> None:
    reference, by_hand = _both(json.dumps(value).encode(), "application/json")
    assert by_hand == reference
