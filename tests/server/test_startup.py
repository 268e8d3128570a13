"""Start-up in-process: measurement before serving, configuration errors with codes, TLS
binding, and per-boot private keys that never reach a disk."""

from __future__ import annotations

import datetime
import hashlib
import os
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from fastapi.testclient import TestClient
from pydantic import ValidationError

from cllm.errors import CllmError
from cllm.evidence import check_evidence, parse_evidence
from cllm.quote import parse_quote
from cllm.server import ServeSettings, build_runtime, create_app
from cllm.server._tls import self_signed_tls
from cllm.tee import SelectedBackend, SimulatedTdBackend, load_simulated_world
from serving import ui_events


def _settings(state: Path, **overrides: object) -> ServeSettings:
    fields: dict[str, object] = {"tee": "simulated", "threads": 1, **overrides}
    return ServeSettings(state_dir=state, **fields)  # type: ignore[arg-type]


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_private_keys_never_touch_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runtime, report = build_runtime(
        _settings(tmp_path / "state"), argv=["cllm", "serve"], clock=time.time
    )
    with TestClient(create_app(runtime)) as client:
        nonce = os.urandom(32)
        evidence = parse_evidence(
            client.get("/v1/attestation/report", params={"nonce": nonce.hex()}).content
        )
        assert check_evidence(evidence, expected_nonce=nonce).ok
        reply = client.post(
            "/v1/chat/completions",
            json={
                "model": runtime.engine.model.id,
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 2,
            },
        )
        assert reply.status_code == 200
    signing = runtime.keys.signing.private_key
    secrets = [
        signing.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()),
        signing.private_numbers().private_value.to_bytes(32, "big"),
        # The test looks inside on purpose: nothing public exposes the private half.
        runtime.keys.hpke._kem_private.raw.private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        ),
    ]
    files = _files(tmp_path)
    assert files  # the simulated TD's own state is there...
    for path in files:
        data = path.read_bytes()
        for secret in secrets:  # ...but no per-boot key, in any encoding we know
            assert secret not in data
            assert secret.hex().encode() not in data
    assert report.rtmr3 != bytes(48)


def test_measurement_happens_before_serving(tmp_path: Path) -> None:
    runtime, report = build_runtime(
        _settings(tmp_path / "state"), argv=["cllm", "serve"], clock=time.time
    )
    assert [e.type for e in report.events] == [
        "cllm.start",  # each start is marked first (issue 12)
        "cllm.package",
        "cllm.engine",
        "cllm.model",
        *ui_events(),
        "cllm.config",
    ]
    assert runtime.events == report.events
    config = report.events[-1]
    assert config.details["settings"]["tee"] == "simulated"  # type: ignore[index]
    assert "api_key" not in config.details["settings"]  # type: ignore[operator]


def test_the_api_key_is_not_measured(tmp_path: Path) -> None:
    _, report = build_runtime(
        _settings(tmp_path / "state", api_key="hunter2-secret"),
        argv=["cllm", "serve", "--api-key", "hunter2-secret"],
        clock=time.time,
    )
    config = report.events[-1].to_json()
    assert "hunter2" not in str(config)
    assert config["details"]["settings"]["client_auth"] == "bearer"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"model": "/nonexistent/model.gguf"}, "model_not_found"),
        ({"engine": "openai"}, "config_invalid"),
        ({"engine": "ollama"}, "config_invalid"),
        ({"engine": "openai", "upstream": "http://127.0.0.1:9", "model": "m"}, "engine_unmeasured"),
        ({"upstream": "http://127.0.0.1:9"}, "config_invalid"),
        ({"tls_cert": "/nonexistent.pem"}, "tls_invalid"),
        ({"tee": "tdx", "sys_root": "/nonexistent"}, "tsm_unavailable"),
    ],
)
def test_configuration_errors_have_codes(
    tmp_path: Path, overrides: dict[str, object], code: str
) -> None:
    with pytest.raises(CllmError) as caught:
        build_runtime(_settings(tmp_path / "state", **overrides), argv=["cllm"], clock=time.time)
    assert caught.value.code == code


def test_tls_certificate_is_bound(tmp_path: Path) -> None:
    tls = self_signed_tls("127.0.0.1", now=datetime.datetime.now(datetime.UTC))
    try:
        runtime, _ = build_runtime(
            _settings(tmp_path / "state", tls_self_signed=True),
            argv=["cllm"],
            clock=time.time,
            tls_cert_pem=tls.cert_pem,
        )
        key_pem = Path(tls.key_path).read_bytes()
        assert key_pem.startswith(b"-----BEGIN PRIVATE KEY")
        assert tls.key_path.startswith("/proc/self/fd/")  # anonymous memory, not a file
    finally:
        tls.close()
    cert = x509.load_pem_x509_certificate(tls.cert_pem)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert runtime.keys.binding(bytes(32)).tls_spki_sha256 == hashlib.sha256(spki).digest()
    assert all(key_pem not in path.read_bytes() for path in _files(tmp_path))


class _BootLongTd:
    """A TD whose RTMR3 outlives the server process, as real TDX's does within one boot."""

    name = "boot-long-td"

    def __init__(self, inner: SimulatedTdBackend) -> None:
        self._inner = inner

    def get_quote(self, report_data: bytes) -> bytes:
        return self._inner.get_quote(report_data)

    def extend_rtmr3(self, digest: bytes) -> None:
        self._inner.extend_rtmr3(digest)

    def read_ccel(self) -> tuple[bytes, bytes] | None:
        return self._inner.read_ccel()


def test_a_restart_within_one_boot_continues_the_rtmr3_log(tmp_path: Path) -> None:
    world = load_simulated_world(tmp_path / "state", clock=time.time)
    td = SelectedBackend(_BootLongTd(SimulatedTdBackend(world)), "test", tmp_path / "state")
    settings = _settings(tmp_path / "state", event_log=tmp_path / "run" / "events.jsonl")
    first, _ = build_runtime(settings, argv=["cllm"], clock=time.time, backend=td)
    second, report = build_runtime(settings, argv=["cllm"], clock=time.time, backend=td)
    assert len(second.events) == 2 * len(first.events)
    assert second.events[: len(first.events)] == first.events
    nonce = os.urandom(32)
    with TestClient(create_app(second)) as client:
        document = client.get("/v1/attestation/report", params={"nonce": nonce.hex()}).content
    assert check_evidence(parse_evidence(document), expected_nonce=nonce).ok
    assert report.rtmr3 == parse_quote(td.backend.get_quote(bytes(64))).td_report.rtmr3
    # The log is gone but the register is not: the server must not start.
    settings.event_log.unlink()
    with pytest.raises(CllmError) as caught:
        build_runtime(settings, argv=["cllm"], clock=time.time, backend=td)
    assert caught.value.code == "rtmr3_unexplained"


def test_queue_answer_cap_and_cors_are_measured(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path / "state",
        default_max_tokens=300,
        max_queue=3,
        cors_origins=("https://chat.example.com",),
    )
    _, report = build_runtime(settings, argv=["cllm", "serve"], clock=time.time)
    measured = report.events[-1].details["settings"]
    assert measured["default_answer_cap"] == 300  # type: ignore[index]
    assert measured["max_queue"] == 3  # type: ignore[index]
    assert list(measured["cors_origins"]) == ["https://chat.example.com"]  # type: ignore[index]
    defaults = build_runtime(_settings(tmp_path / "s2"), argv=["cllm"], clock=time.time)[1]
    settings_doc = defaults.events[-1].details["settings"]
    assert settings_doc["default_answer_cap"] == 1024  # type: ignore[index]
    assert list(settings_doc["cors_origins"]) == []  # type: ignore[index]


@pytest.mark.parametrize("origin", ["*", "chat.example.com", "https://a.example/path", "null"])
def test_cors_origins_are_origins(tmp_path: Path, origin: str) -> None:
    with pytest.raises(ValidationError, match="cors_origins"):
        _settings(tmp_path / "state", cors_origins=(origin,))
