"""``cllm serve`` configuration: one settings model, from flags or ``CLLM_SERVE_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    # /v1/attestation/report: quotes are costly on real TDX; a token bucket per server.
    report_rate: float = Field(default=10.0, gt=0)
    report_burst: int = Field(default=20, ge=1)
    # GPUs (docs/gpu.md, "Collection and the boot gate"): the backend, and whether attested
    # GPUs are required (None: required when the backend finds GPUs, off when it finds none).
    gpu_backend: Literal["auto", "nvml", "simulated", "none"] = "auto"
    gpu: Literal["required", "optional", "off"] | None = None
    gpu_rim_dir: Path | None = None  # RIMs by id (air-gapped); default: the backend's or NVIDIA's
    gpu_ocsp: Literal["require", "allow-unknown", "off"] = "require"

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
        return doc
