"""The SDK against a real server and a real verifier: verify first, then sealed chats whose
answers are signature-checked; the official openai package through the drop-in client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest

from cllm.client import (
    AsyncClient,
    Client,
    LocalVerifier,
    RemoteVerifier,
    openai_http_client,
)
from cllm.errors import AttestationError
from proxying import RecordingProxy
from serving import MODEL, ServeProcess, VerifierProcess

MESSAGES = [{"role": "user", "content": "My favourite bird is the GANNET-8841. Say hi."}]


@pytest.fixture(params=["local", "remote"])
def trusting(
    request: pytest.FixtureRequest, simulated_root: Path, verifier: VerifierProcess
) -> LocalVerifier | RemoteVerifier:
    if request.param == "local":
        return LocalVerifier(trust_simulated_root=simulated_root)
    return RemoteVerifier(verifier.url)


def test_verify_then_chat(server: ServeProcess, trusting: LocalVerifier | RemoteVerifier) -> None:
    with Client(server.url, verifier=trusting) as client:
        result = client.verify()
        assert result.status == "warning"  # simulated evidence: never better
        assert result.simulated
        # The default policy pins no software (issue 12).
        assert [r.code for r in result.reasons] == ["no_reference_values", "simulated_evidence"]
        assert result.keys is not None
        assert result.claims["components"][3]["type"] == "cllm.model"  # after the start marker
        assert result.upstream == {"scope": "embedded", "host": None}
        reply = client.chat.completions.create(messages=MESSAGES, max_tokens=10, temperature=0)
        assert reply.model == MODEL
        assert reply.content
        assert reply.usage is not None
        chunks = list(
            client.chat.completions.create(
                messages=MESSAGES, max_tokens=10, temperature=0, stream=True
            )
        )
        assert "".join(c.content for c in chunks) == reply.content
        assert chunks[-1].usage is not None


def test_warnings_can_be_refused(server: ServeProcess, simulated_root: Path) -> None:
    verifier = LocalVerifier(trust_simulated_root=simulated_root)
    with Client(server.url, verifier=verifier, allow_warning=False) as client:
        with pytest.raises(AttestationError) as caught:
            client.chat.completions.create(messages=MESSAGES, max_tokens=2)
        assert caught.value.code == "attestation_warning"


def test_untrusted_simulated_evidence_sends_nothing(server: ServeProcess) -> None:
    with (
        RecordingProxy(server.port) as proxy,
        Client(proxy.url, verifier=LocalVerifier()) as client,
    ):
        with pytest.raises(AttestationError) as caught:
            client.chat.completions.create(messages=MESSAGES, max_tokens=2)
        assert caught.value.code == "attestation_failed"
        assert client.verification is not None
        assert client.verification.status == "contraindicated"
        assert "simulated_not_trusted" in [r.code for r in client.verification.reasons]
        assert b"GANNET" not in proxy.captured()
        assert b"/v1/chat/completions" not in proxy.captured()  # not even the request line


def test_async_client(server: ServeProcess, simulated_root: Path) -> None:
    async def run() -> tuple[str, str]:
        verifier = LocalVerifier(trust_simulated_root=simulated_root)
        async with AsyncClient(server.url, verifier=verifier) as client:
            reply = await client.chat.completions.create(
                messages=MESSAGES, max_tokens=8, temperature=0
            )
            parts = [
                c.content
                async for c in client.chat.completions.stream(
                    messages=MESSAGES, max_tokens=8, temperature=0
                )
            ]
            return reply.content, "".join(parts)

    whole, streamed = asyncio.run(run())
    assert whole
    assert streamed == whole


@pytest.mark.parametrize("stream", [False, True])
def test_official_openai_package_through_the_drop_in(
    server: ServeProcess, simulated_root: Path, stream: bool
) -> None:
    with RecordingProxy(server.port) as proxy:
        http_client = openai_http_client(
            f"{proxy.url}/v1", verifier=LocalVerifier(trust_simulated_root=simulated_root)
        )
        client = openai.OpenAI(
            base_url=f"{proxy.url}/v1", api_key="unused", http_client=http_client, max_retries=0
        )
        if stream:
            chunks = client.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=12, stream=True
            )  # type: ignore[arg-type]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=12)  # type: ignore[arg-type]
            text = reply.choices[0].message.content or ""
        assert text
        assert [m.id for m in client.models.list()] == [MODEL]
        wire = proxy.captured()
    assert b"GANNET" not in wire
    assert text.encode() not in wire
