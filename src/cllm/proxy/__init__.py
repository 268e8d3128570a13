"""``cllm proxy``: the user's own trust anchor, a local gateway that verifies a cllm server
with the user's verifier and policy, seals every request to the attested key, checks every
answer's signature, and offers the OpenAI and Ollama APIs (and the web UI from the user's own
installed package) on this machine, so that any client works unchanged."""

from cllm.proxy._app import Gateway, ProxySettings, create_proxy_app

__all__ = [
    "Gateway",
    "ProxySettings",
    "create_proxy_app",
]
