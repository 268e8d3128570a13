"""``cllm proxy`` with real parts: the official ``openai`` and ``ollama`` clients, unchanged,
through a real ``cllm proxy`` process to a real ``cllm serve`` (simulated TD), verified by the
local verifier or a real verifier service. A recording forwarding proxy between ``cllm proxy``
and the server sees what any box on that path would: never a prompt, an answer or a signature."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from cllm.cli import main
from gateway import ProxyProcess, start_proxy
from proxying import RecordingProxy
from serving import MODEL, ServeProcess, VerifierProcess

PROMPT = "My favourite bird is the GANNET-3317. Say hi."
MESSAGES = [{"role": "user", "content": PROMPT}]


@pytest.fixture(scope="module")
def recorded(server: ServeProcess) -> Iterator[RecordingProxy]:
    with RecordingProxy(server.port) as recording:
        yield recording


@pytest.fixture(scope="module", params=["local", "remote"])
def gateway(
    request: pytest.FixtureRequest,
    recorded: RecordingProxy,
    simulated_root: Path,
    verifier: VerifierProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProxyProcess]:
    """``cllm proxy`` in front of the recording proxy, verifying locally or through the
    verifier service (its key pinned)."""
    root = tmp_path_factory.mktemp(f"gateway-{request.param}")
    if request.param == "local":
        args = ["--trust-simulated-root", str(simulated_root)]
    else:
        kid = httpx.get(f"{verifier.url}/.well-known/jwks.json").json()["keys"][0]["kid"]
        args = ["--verifier", verifier.url, f"--verifier-key={kid}"]
    proxy = start_proxy(recorded.url, args, config_home=root, log_path=root / "proxy.log")
    yield proxy
    proxy.stop()
    assert "GANNET" not in proxy.log()  # the proxy logs no prompt either


def _assert_sealed(wire: bytes, *answers: str) -> None:
    assert b"GANNET" not in wire
    assert b"cllm_signature" not in wire
    for answer in answers:
        assert answer.strip()
        assert answer.encode() not in wire


@pytest.mark.parametrize("stream", [False, True])
def test_the_openai_client_unchanged(
    gateway: ProxyProcess, recorded: RecordingProxy, stream: bool
) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == [MODEL]
    if stream:
        chunks = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=10, stream=True
        )  # type: ignore[call-overload]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=10)  # type: ignore[call-overload]
        text = reply.choices[0].message.content or ""
        assert reply.usage is not None and reply.usage.completion_tokens > 0
    _assert_sealed(recorded.captured(), text)


@pytest.mark.parametrize("stream", [False, True])
def test_the_ollama_client_unchanged(
    gateway: ProxyProcess, recorded: RecordingProxy, stream: bool
) -> None:
    client = ollama.Client(host=gateway.url)
    assert [m.model for m in client.list().models] == [f"{MODEL}:latest"]
    options = {"num_predict": 8}
    if stream:
        chat = "".join(
            part.message.content or ""
            for part in client.chat(model=MODEL, messages=MESSAGES, stream=True, options=options)
        )
        generated = "".join(
            part.response
            for part in client.generate(model=MODEL, prompt=PROMPT, stream=True, options=options)
        )
    else:
        chat = client.chat(model=MODEL, messages=MESSAGES, options=options).message.content or ""
        generated = client.generate(model=MODEL, prompt=PROMPT, options=options).response
    _assert_sealed(recorded.captured(), chat, generated)
    version = httpx.get(f"{gateway.url}/api/version", timeout=60)
    assert version.status_code == 200 and version.json()["version"]


def test_status_is_cllm_verify_json(
    gateway: ProxyProcess, server: ServeProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    status = gateway.status()
    assert status["status"] == "warning"
    # No release pins the test server's software (issue 12): said, beside the simulated TD.
    codes = [r["code"] for r in status["reasons"]]
    assert codes == ["no_reference_values", "simulated_evidence"]
    assert status["proxy"]["attestations"] >= 1
    assert status["tls"]["ends_in_td"] is False  # plain HTTP: said, not hidden
    assert status["expires_at"] > status["checked_at"]
    args = [server.url, "--json"]
    if status["verifier"] == "local":
        args += [
            "--trust-simulated-root",
            str(server.log_path.parent / "state/simulated/root-ca.pem"),
        ]
    else:
        args += ["--verifier", status["verifier"]]
    main(["verify", *args])
    direct = json.loads(capsys.readouterr().out)
    assert set(status) - {"proxy"} == set(direct)
    for same in ("status", "reasons", "tee", "simulated", "td", "components", "policy", "verifier"):
        assert status[same] == direct[same]


def test_other_methods_and_non_json_are_refused_unforwarded(
    gateway: ProxyProcess, recorded: RecordingProxy
) -> None:
    before = len(recorded.captured())
    put = httpx.put(f"{gateway.url}/v1/chat/completions", content=PROMPT, timeout=60)
    assert put.status_code == 405
    assert put.json()["error"]["code"] == "method_not_allowed"
    plain = httpx.post(
        f"{gateway.url}/api/chat",
        content=json.dumps({"model": MODEL, "messages": MESSAGES}),
        headers={"content-type": "text/plain"},  # what a cross-site form could send
        timeout=60,
    )
    assert plain.status_code == 415
    assert plain.json()["code"] == "unsupported_media"
    rebound = httpx.get(f"{gateway.url}/cllm/status", headers={"host": "evil.example:80"})
    assert rebound.status_code == 421
    assert len(recorded.captured()) == before
