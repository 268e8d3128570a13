"""``cllm serve`` against hostile clients and web pages (issue 14, items 5 and 7): a slowloris
holding hundreds of half-sent requests, cross-origin "simple" POSTs (``text/plain`` and the
other types a page may send without a CORS preflight), and DNS rebinding (a foreign ``Host``)."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cllm.cli import main
from cllm.crypto import HpkeKeyPair, request_aad, seal_request
from cllm.server import ServeSettings
from serving import MODEL, ServeProcess, http, start_serve
from slowloris import Held, healthz_seconds

HEADER_TIMEOUT = 3.0
SLACK = 3.0  # a loaded 2-core machine; what is asserted is "closed by the timer, not never"
PLAIN = {"Content-Type": "text/plain"}
POST_ROUTES = ("/v1/chat/completions", "/api/chat", "/api/generate")
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """A server that answers only for localhost names and waits 3 s for a request head."""
    root = tmp_path_factory.mktemp("hardened")
    server = start_serve(
        ["--allowed-host", "localhost", "--allowed-host", "127.0.0.1"],
        state_dir=root / "state",
        log_path=root / "serve.log",
        env={"CLLM_SERVE_HEADER_TIMEOUT": str(HEADER_TIMEOUT)},
    )
    yield server
    server.stop()


def _body(path: str) -> bytes:
    """A valid request for ``path``, one token long."""
    doc: dict[str, object]
    if path.startswith("/v1/"):
        doc = {**CHAT, "max_tokens": 1}
    else:
        doc = {**CHAT, "stream": False, "options": {"num_predict": 1}}
        if path == "/api/generate":
            doc["prompt"] = doc.pop("messages") and "Hi"
    return json.dumps(doc).encode()


def _is_415(path: str, response: httpx.Response) -> None:
    assert response.status_code == 415, response.text
    if path.startswith("/api/"):
        assert set(response.json()) == {"error"}
        assert "application/" in response.json()["error"]
    else:
        error = response.json()["error"]
        assert error["code"] == "unsupported_media_type"
        assert error["type"] == "invalid_request_error"


# --- slowloris ---------------------------------------------------------------------------------


def test_slowloris_300_half_sent_requests(hardened: ServeProcess) -> None:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl"
    with Held(hardened.port, 300, head=head) as held:
        time.sleep(HEADER_TIMEOUT / 3)
        assert held.open_count() == 300  # all held at once
        status, seconds = healthz_seconds(hardened.url)
        assert status == 200
        assert seconds < 1.0
        ends = held.wait_closed(held.opened_at + HEADER_TIMEOUT + SLACK)
        elapsed = time.monotonic() - held.opened_at
    assert ends == {b"HTTP/1.1 408 Request Timeout": 300}
    assert elapsed >= HEADER_TIMEOUT - 0.1
    assert healthz_seconds(hardened.url)[0] == 200


def test_limits_are_measured_into_the_configuration(tmp_path: Path) -> None:
    settings = ServeSettings(
        state_dir=tmp_path,
        header_timeout=3,
        allowed_hosts=("LocalHost.", "[::1]", "*.Example.org"),
    )
    public = settings.public()
    assert public["header_timeout"] == "3.0"
    assert public["body_timeout"] == "60.0"
    assert public["idle_timeout"] == "5.0"
    assert public["max_concurrent_requests"] == 256
    assert "max_connections" not in public  # derived from RLIMIT_NOFILE at start
    assert public["allowed_hosts"] == ["localhost", "::1", "*.example.org"]


@pytest.mark.parametrize("entry", ["http://localhost", "exa mple.org", "*", "a.*.org", ""])
def test_an_allowed_host_that_is_no_host_name_is_refused(tmp_path: Path, entry: str) -> None:
    with pytest.raises(ValueError, match="not a host name"):
        ServeSettings(state_dir=tmp_path, allowed_hosts=(entry,))


# --- cross-origin "simple" POSTs and other wrong content types ----------------------------------


@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,  # a page's Blob body without a type goes out with no Content-Type at all
        "application/jsonx",
        "text/json",
        "application/cllm-hpke",  # a sealed type without the sealed request's header
    ],
)
def test_a_post_with_the_wrong_content_type_is_415_and_not_processed(
    served: ServeProcess, path: str, content_type: str | None
) -> None:
    # What a browser adds to every POST a page makes (a page cannot remove them).
    headers = {"Origin": "http://attacker.invalid", "Sec-Fetch-Mode": "no-cors"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = http.post(f"{served.url}{path}", content=_body(path), headers=headers)
    _is_415(path, response)


@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize(
    "browser_header", [{"Origin": "http://attacker.invalid"}, {"Sec-Fetch-Site": "cross-site"}]
)
def test_an_untyped_post_from_a_browser_is_415(
    served: ServeProcess, path: str, browser_header: dict[str, str]
) -> None:
    response = http.post(f"{served.url}{path}", content=_body(path), headers=browser_header)
    _is_415(path, response)


def test_an_untyped_json_post_from_a_program_is_served(served: ServeProcess) -> None:
    # litellm's Ollama client posts JSON with no Content-Type, as real Ollama accepts.
    response = http.post(f"{served.url}/api/show", content=json.dumps({"model": MODEL}))
    assert response.status_code == 200, response.text
    assert "details" in response.json()


@pytest.mark.parametrize("path", POST_ROUTES)
def test_a_large_text_plain_post_is_415_on_a_reusable_connection(
    served: ServeProcess, path: str
) -> None:
    with httpx.Client(base_url=served.url, timeout=120) as client:
        response = client.post(path, content=b"{" + b" " * 500_000 + b"}", headers=PLAIN)
        _is_415(path, response)
        assert client.get("/healthz").status_code == 200  # the same connection, kept alive


@pytest.mark.parametrize("path", POST_ROUTES)
def test_two_content_types_are_415(served: ServeProcess, path: str) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        body = _body(path)
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 415 ")


@pytest.mark.parametrize("path", POST_ROUTES)
def test_a_sealed_request_must_say_so_in_its_content_type(served: ServeProcess, path: str) -> None:
    # Any key will do: the type is refused before the body is opened.
    sealed = seal_request(
        HpkeKeyPair.generate().public_bytes(), _body(path), aad=request_aad("POST", path)
    )
    headers = {**sealed.headers(), "Content-Type": "application/json"}
    response = http.post(f"{served.url}{path}", content=sealed.ciphertext, headers=headers)
    _is_415(path, response)
    headers["Content-Type"] = "text/plain"
    response = http.post(f"{served.url}{path}", content=os.urandom(64), headers=headers)
    _is_415(path, response)


@pytest.mark.parametrize("path", POST_ROUTES)
def test_json_with_parameters_is_accepted(served: ServeProcess, path: str) -> None:
    response = http.post(
        f"{served.url}{path}",
        content=_body(path),
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 200, response.text


def test_routes_without_a_body_take_any_content_type(served: ServeProcess) -> None:
    response = http.get(f"{served.url}/v1/models", headers={"Content-Type": "text/plain"})
    assert response.status_code == 200
    # A POST where no route takes one is the router's business (404/405), not a 415.
    assert http.post(f"{served.url}/healthz", content=b"x").status_code == 405
    assert http.post(f"{served.url}/nowhere", content=b"x").status_code in (404, 405)


# --- DNS rebinding: Host names ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/v1/models", "/api/tags", "/"])
def test_a_foreign_host_is_403(hardened: ServeProcess, path: str) -> None:
    response = http.get(
        f"{hardened.url}{path}", headers={"Host": f"attacker.invalid:{hardened.port}"}
    )
    assert response.status_code == 403
    if path.startswith("/api/"):
        assert set(response.json()) == {"error"}
    else:
        assert response.json()["error"]["code"] == "host_not_allowed"


@pytest.mark.parametrize("path", POST_ROUTES)
def test_a_rebinding_page_cannot_chat(hardened: ServeProcess, path: str) -> None:
    response = http.post(
        f"{hardened.url}{path}",
        content=_body(path),
        headers={"Host": "rebind.attacker.invalid", "Content-Type": "application/json"},
    )
    assert response.status_code == 403
    if not path.startswith("/api/"):
        assert response.json()["error"]["code"] == "host_not_allowed"


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:{port}", "localhost.:{port}", "127.0.0.1:{port}"]
)
def test_allowed_hosts_are_served(hardened: ServeProcess, host: str) -> None:
    response = http.get(
        f"{hardened.url}/healthz", headers={"Host": host.format(port=hardened.port)}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.0\r\n\r\n",  # no Host at all
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: attacker.invalid\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: localhost.attacker.invalid\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1.nip.invalid\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: localhost:80:80\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: [::1]\r\n\r\n",  # not in this server's list
    ],
)
def test_a_missing_double_or_lookalike_host_is_403(hardened: ServeProcess, head: bytes) -> None:
    with socket.create_connection(("127.0.0.1", hardened.port), timeout=30) as sock:
        sock.sendall(head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 403 "), answer[:100]
    assert b'"host_not_allowed"' in answer


def test_the_flag_refuses_what_is_no_host_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--state-dir", str(tmp_path), "--allowed-host", "https://x.example"])
    assert caught.value.code == 2
    assert "argument --allowed-host: not a host name" in capsys.readouterr().err
