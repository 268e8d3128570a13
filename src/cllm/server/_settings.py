"""``cllm serve`` configuration: one settings model, from flags or ``CLLM_SERVE_*``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cllm.server._guard import normalise_host

__all__ = ["EngineName", "ServeSettings"]

EngineName = Literal["llama-cpp", "ollama", "openai"]


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLLM_SERVE_", frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    engine: EngineName = "llama-cpp"
    # llama-cpp: a GGUF path (default: the packaged SmolLM2); ollama: "name:tag"; openai: the
    # upstream's model id.
    model: str | None = None
    # openai: the model's files, measured as the model component (optional).
    model_path: Path | None = None
    upstream: str | None = None
    # A non-loopback upstream sees every decrypted prompt: refused unless this is set.
    allow_remote_upstream: bool = False
    measure: tuple[Path, ...] = ()
    ollama_models: Path | None = None  # Ollama's model store; default ~/.ollama/models
    tee: Literal["auto", "tdx", "simulated"] = "auto"
    sys_root: Path = Path("/")
    # Real TDX: the RTMR3 event log, kept across restarts within one boot (tmpfs: a reboot
    # resets RTMR3 and clears it alike).
    event_log: Path = Path("/run/cllm/rtmr3-events.jsonl")
    verifier: str | None = None
    api_key: SecretStr | None = None
    state_dir: Path
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_self_signed: bool = False
    ui_dir: Path | None = None
    n_ctx: int = Field(default=4096, ge=256)
    threads: int | None = Field(default=None, ge=1)
    # llama-cpp: a token that follows the last one sent by less than this waits for the next
    # one and goes with it (0: every token alone). See cllm.engine's LlamaCppEngine.
    stream_interval_ms: float = Field(default=16.0, ge=0, le=1000)
    # The answer cap of a request that sets none (max_tokens / num_predict), so no request
    # holds the engine without a bound; and how many requests may wait for the embedded
    # engine (more: 429 with Retry-After).
    default_max_tokens: int = Field(default=1024, ge=1)
    max_queue: int = Field(default=16, ge=0)
    # Origins allowed to call the APIs from a browser (CORS); none by default.
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    # /v1/attestation/report: one quote per batch of nonces, admitted fairly per client (see
    # cllm.server._admission). A batch of at most attest_batch_max (1: unbatched) closes once
    # the quote slot is free and its oldest nonce waited attest_batch_wait_ms; each client may
    # have attest_client_pending nonces pending (beyond: a short wait, then 429), all together
    # attest_queue_max (503 beyond).
    attest_batch_max: int = Field(default=1024, ge=1, le=65536)
    attest_batch_wait_ms: float = Field(default=2.0, ge=0, le=1000)
    attest_client_pending: int = Field(default=4, ge=1, le=65536)
    attest_queue_max: int = Field(default=16384, ge=1, le=1 << 20)
    # A request over its client's share waits up to this long for it to free before 429.
    attest_share_wait_ms: float = Field(default=250.0, ge=0, le=10_000)
    # Count clients by this header's last address (set by a trusted reverse proxy) instead of
    # the peer address. Only when configured: anyone can send the header.
    trusted_proxy_header: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,64}$")
    # GPUs (docs/gpu.md, "Collection and the boot gate"): the backend, and whether attested
    # GPUs are required (None: required when the backend finds GPUs, off when it finds none).
    gpu_backend: Literal["auto", "nvml", "simulated", "none"] = "auto"
    gpu: Literal["required", "optional", "off"] | None = None
    gpu_rim_dir: Path | None = None  # RIMs by id (air-gapped); default: the backend's or NVIDIA's
    gpu_ocsp: Literal["require", "allow-unknown", "off"] = "require"
    # Connections (docs/server.md, "Connections and timeouts"): seconds for a request head and
    # then for its body, for an idle kept-alive connection; requests running at once; open
    # connections (None: what RLIMIT_NOFILE leaves, see cllm._internal.transport).
    header_timeout: float = Field(default=10.0, gt=0, le=300)
    body_timeout: float = Field(default=60.0, gt=0, le=3600)
    idle_timeout: float = Field(default=5.0, gt=0, le=3600)
    max_concurrent_requests: int = Field(default=256, ge=1)
    max_connections: int | None = Field(default=None, ge=1)
    # Host names this server answers for (DNS rebinding); empty: any.
    allowed_hosts: tuple[str, ...] = ()

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        hosts = []
        for entry in value:
            host = normalise_host(entry)
            if host is None:
                raise ValueError(f"not a host name or IP address: {entry!r}")
            hosts.append(host)
        return tuple(hosts)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        for origin in origins:
            # An origin is scheme://host[:port], nothing more; "*" would let every web page
            # read answers from users' browsers, so origins are named one by one.
            if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", origin):
                raise ValueError(f"{origin!r} is not an origin like https://chat.example.com")
        return origins

    def public(self) -> dict[str, object]:
        """The effective configuration as measured into RTMR3: unset options left out, floats
        as text (event JSON has no floats), the API key only as whether
        one is required."""
        doc: dict[str, object] = {}
        for key, value in self.model_dump(mode="json", exclude={"api_key"}).items():
            if value is not None:
                doc[key] = str(value) if isinstance(value, float) else value
        # Said without the word "key", which the measurement's secret filter would drop.
        doc["client_auth"] = "bearer" if self.api_key is not None else "none"
        # Likewise "token": --default-max-tokens is measured as the default answer cap.
        doc["default_answer_cap"] = doc.pop("default_max_tokens")
        return doc
