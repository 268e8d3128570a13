"""Settings of ``cllm verifier serve`` (environment ``CLLM_VERIFIER_*`` or command line)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["VerifierSettings"]


class VerifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLLM_VERIFIER_", frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=1, le=65535)
    policy_dir: Path | None = None
    collateral_dir: Path | None = None
    pccs_url: str | None = None  # None: PCCS_URL of /etc/sgx_default_qcnl.conf, else Intel PCS
    trust_simulated_root: Path | None = None
    trust_simulated_gpu_root: Path | None = None  # a simulated GPU's roots (never above warning)
    state_dir: Path
    issuer: str = "cllm-verifier"
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    cors_origins: tuple[str, ...] = ("*",)
    # Connections (docs/verifier.md, "Connections and timeouts"): seconds for a request head
    # and then for its body, for an idle kept-alive connection; requests running at once; open
    # connections (None: what RLIMIT_NOFILE leaves, see cllm._transport).
    header_timeout: float = Field(default=10.0, gt=0, le=300)
    body_timeout: float = Field(default=60.0, gt=0, le=3600)
    idle_timeout: float = Field(default=5.0, gt=0, le=3600)
    max_concurrent_requests: int = Field(default=256, ge=1)
    max_connections: int | None = Field(default=None, ge=1)
    # Processes forked after the state is loaded, serving one socket (cllm._transport).
    workers: int = Field(default=1, ge=1, le=256)
    # Longest an attestation answer waits for its appraisal (collateral fetch included).
    appraisal_timeout_s: float = Field(default=10.0, gt=0, le=300)
