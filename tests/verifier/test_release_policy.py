"""The verifier service (issue 12): policies in its policy directory that name a signed release,
and a TD report 1.5 (quote v5) of a migratable TD with a service TD bound, under ``default``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from cllm.measure import Event, replay_ccel, start_marker
from cllm.release import create_release, generate_publisher_key, load_private_key
from cllm.tee import SimulatedTdBackend, load_simulated_world
from cllm.tee._sim_dcap import SimulatedTd
from cllm.token import verify_token
from cllm.verifier import VerifierSettings, create_app, load_state
from simulated_evidence import simulated_evidence

NOW = 1_790_000_000
MIGRATABLE = 1 << 29
SEPT_VE_DISABLE = 1 << 28
EVENTS = (
    Event(rtmr=3, type="cllm.package", name="confidential-llm", digest=b"\x01" * 48),
    Event(rtmr=3, type="cllm.engine", name="llama_cpp_python", digest=b"\x02" * 48),
    Event(rtmr=3, type="cllm.model", name="m.gguf", digest=b"\x03" * 48),
    Event(
        rtmr=3,
        type="cllm.config",
        name="config",
        digest=b"\x04" * 48,
        details={"settings": {"upstream_scope": "embedded"}},  # type: ignore[arg-type]
    ),
)


class _V5Td:
    """A simulated TD quoting with TD report 1.5 (quote v5) and chosen attributes and
    MRSERVICETD, as a migratable TD with a bound service TD would."""

    name = "simulated-v5"

    def __init__(self, inner: SimulatedTdBackend, *, attributes: int, servicetd: bytes) -> None:
        self._inner = inner
        firmware = replay_ccel(*inner.read_ccel())  # type: ignore[misc]
        self._td = SimulatedTd(
            mrtd=inner.world.mrtd,
            rtmr0=firmware.rtmr0,
            rtmr1=firmware.rtmr1,
            rtmr2=firmware.rtmr2,
            td_attributes=attributes.to_bytes(8, "little"),
            mr_servicetd=servicetd,
        )

    def get_quote(self, report_data: bytes) -> bytes:
        td = replace(self._td, rtmr3=self._inner.rtmr3)
        return self._inner.world.dcap.quote(report_data=report_data, td=td, version=5)

    def extend_rtmr3(self, digest: bytes) -> None:
        self._inner.extend_rtmr3(digest)

    def read_ccel(self) -> tuple[bytes, bytes] | None:
        return self._inner.read_ccel()


class _Service:
    def __init__(self, tmp: Path, policy_dir: Path | None = None) -> None:
        self.world = load_simulated_world(tmp / "td", clock=lambda: float(NOW))
        settings = VerifierSettings(
            state_dir=tmp / "verifier",
            trust_simulated_root=self.world.root_ca_path,
            policy_dir=policy_dir,
            pccs_url="http://127.0.0.1:9",
        )
        self.client = TestClient(create_app(load_state(settings, clock=lambda: float(NOW))))
        self.jwks = self.client.get("/.well-known/jwks.json").json()

    def attest(
        self, backend: Any, events: tuple[Event, ...], policy: str = "default"
    ) -> dict[str, Any]:
        document, nonce = simulated_evidence(self.world, events, backend=backend)
        body = {"evidence": document, "nonce": nonce.hex()}
        response = self.client.post("/v1/attestation", json={**body, "policy": policy})
        assert response.status_code == 200, response.text
        return verify_token(response.json()["token"], jwks=self.jwks, now=NOW)


def _policy_dir(tmp_path: Path, events: tuple[Event, ...]) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    private, public = generate_publisher_key()
    (directory / "publisher.pem").write_bytes(public)
    (directory / "cllm-1.json").write_bytes(
        create_release(
            name="cllm",
            version="1",
            created=NOW,
            components=events,
            boot={},
            key=load_private_key(private),
        )
    )
    (directory / "cllm-1.toml").write_text(
        '[release]\nmanifest = "cllm-1.json"\npublisher_key = "publisher.pem"\n'
    )
    return directory


def test_a_policy_naming_the_release_that_runs(tmp_path: Path) -> None:
    service = _Service(tmp_path, _policy_dir(tmp_path, EVENTS))
    backend = SimulatedTdBackend(service.world)
    claims = service.attest(backend, (start_marker(0), *EVENTS), policy="cllm-1")
    assert claims["status"] == "warning"
    assert [r["code"] for r in claims["reasons"]] == ["simulated_evidence"]
    assert claims["reference"]["components"] is True
    assert claims["reference"]["releases"][0]["name"] == "cllm"
    listed = service.client.get("/v1/policies").json()["policies"]
    assert [p["id"] for p in listed] == ["cllm-1", "default"]


def test_a_policy_naming_a_release_of_other_software(tmp_path: Path) -> None:
    service = _Service(tmp_path, _policy_dir(tmp_path, EVENTS))
    other = (*EVENTS[:2], replace(EVENTS[2], name="other.gguf"), EVENTS[3])
    claims = service.attest(SimulatedTdBackend(service.world), other, policy="cllm-1")
    assert claims["status"] == "contraindicated"
    assert [r["code"] for r in claims["reasons"]] == ["component_missing", "component_mismatch"]
    assert "cllm.model other.gguf" in claims["reasons"][1]["message"]


def test_a_migratable_td_with_a_bound_service_td(tmp_path: Path) -> None:
    """Attack: a v5 quote whose TD is MIGRATABLE and has a service TD (a migration TD that can
    export its state) bound: every policy used to accept it."""
    service = _Service(tmp_path)
    backend = _V5Td(
        SimulatedTdBackend(service.world),
        attributes=SEPT_VE_DISABLE | MIGRATABLE,
        servicetd=b"\x5a" * 48,
    )
    claims = service.attest(backend, EVENTS)
    assert claims["status"] == "contraindicated"
    assert [r["code"] for r in claims["reasons"]] == [
        "td_attributes_not_allowed",
        "mrservicetd_mismatch",
        "no_reference_values",
    ]
    assert "MIGRATABLE" in claims["reasons"][0]["message"]
    assert claims["td"]["mrservicetd"] == "5a" * 48
    assert (
        claims["td"]["td_attributes"] == (SEPT_VE_DISABLE | MIGRATABLE).to_bytes(8, "little").hex()
    )
    for name in ("xfam", "mrconfigid", "mrowner", "mrownerconfig"):
        assert len(claims["td"][name]) in (16, 96), name
    # The same TD, not migratable and with no service TD: only the unpinned software remains.
    clean = _V5Td(
        SimulatedTdBackend(service.world), attributes=SEPT_VE_DISABLE, servicetd=bytes(48)
    )
    claims = service.attest(clean, EVENTS)
    assert [r["code"] for r in claims["reasons"]] == ["no_reference_values", "simulated_evidence"]
