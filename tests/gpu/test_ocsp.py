"""OCSP: requests, strict response checks, modes, supplied answers and a loopback responder;
and the simulated GPU that must never pass as NVIDIA hardware."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp
from gpu_pki import DRIVER, NONCE, NOW, Node, _name, issue, pki
from loopback import serve

from cllm.gpu import (
    NO_RIMS,
    GpuVerification,
    GpuVerifier,
    OcspFetcher,
    OcspMode,
    OcspPolicy,
    RimDirectory,
    RimFiles,
    RimKind,
    RimService,
    RimSources,
    nvidia_roots,
)
from cllm.gpu._ocsp import build_ocsp_request

GOOD = ocsp.OCSPCertStatus.GOOD


def verify(policy: OcspPolicy, **kwargs: Any) -> GpuVerification:
    p = pki()
    options: dict[str, Any] = {"rims": NO_RIMS, "rims_required": (), "at": NOW}
    options.update(kwargs)
    return GpuVerifier(roots=p.roots).verify(
        options.pop("report", None) or p.report(),
        chain=p.chain_pem,
        expected_nonce=NONCE,
        ocsp=policy,
        **options,
    )


def code(result: GpuVerification) -> str | None:
    return result.error.code if result.error else None


def device_answers(**kwargs: Any) -> tuple[bytes, ...]:
    p = pki()
    return tuple(p.ocsp(p.device, i, **kwargs) for i in (1, 2, 3))


def test_simulated_gpu_passes_only_under_its_own_roots() -> None:
    result = verify(OcspPolicy(OcspMode.OFF))
    assert result.ok and result.claims is not None
    assert not result.claims.nvidia_hardware and result.claims.roots == "test GPU roots"
    nvidia = GpuVerifier(roots=nvidia_roots()).verify(
        pki().report(),
        chain=pki().chain_pem,
        expected_nonce=NONCE,
        rims=NO_RIMS,
        rims_required=(),
        ocsp=OcspPolicy(OcspMode.OFF),
        at=NOW,
    )
    assert code(nvidia) == "gpu_chain_untrusted"


def test_request_shape() -> None:
    p = pki()
    request = ocsp.load_der_ocsp_request(
        build_ocsp_request(p.device[1].cert, p.device[2].cert, nonce=b"n" * 32)
    )
    assert request.serial_number == p.device[1].cert.serial_number
    assert isinstance(request.hash_algorithm, hashes.SHA384)
    assert request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 32


def test_modes_without_answers() -> None:
    assert code(verify(OcspPolicy(OcspMode.REQUIRE))) == "gpu_ocsp_unavailable"
    weak = verify(OcspPolicy(OcspMode.ALLOW_UNKNOWN))
    assert weak.ok and weak.claims and weak.claims.ocsp == "unavailable"
    off = verify(OcspPolicy(OcspMode.OFF))
    assert off.ok and off.claims and off.claims.ocsp == "off"


def test_supplied_good_answers() -> None:
    result = verify(OcspPolicy(OcspMode.REQUIRE, responses=device_answers()))
    assert result.ok, result.error
    assert result.claims and result.claims.ocsp == "good"


def test_revoked_is_fatal_in_every_mode() -> None:
    p = pki()
    answers = (*device_answers()[:1], p.ocsp(p.device, 2, status=ocsp.OCSPCertStatus.REVOKED))
    answers += device_answers()[2:]
    for mode in (OcspMode.REQUIRE, OcspMode.ALLOW_UNKNOWN):
        assert code(verify(OcspPolicy(mode, responses=answers))) == "gpu_cert_revoked"


def test_unknown_status() -> None:
    answers = device_answers(status=ocsp.OCSPCertStatus.UNKNOWN)
    assert code(verify(OcspPolicy(OcspMode.REQUIRE, responses=answers))) == "gpu_ocsp_unknown"
    weak = verify(OcspPolicy(OcspMode.ALLOW_UNKNOWN, responses=answers))
    assert weak.ok and weak.claims and weak.claims.ocsp == "unknown"


def test_forged_and_delegated_responders() -> None:
    p = pki()
    stranger = issue(_name("Test GH100 Identity"), None, ca=True)
    forged = p.ocsp(p.device, 3, responder=stranger)
    answers = (*device_answers()[:2], forged)
    # Even allow-unknown refuses an answer that does not verify.
    for mode in (OcspMode.REQUIRE, OcspMode.ALLOW_UNKNOWN):
        assert code(verify(OcspPolicy(mode, responses=answers))) == "gpu_ocsp_invalid"
    # A delegated responder issued by a CA of the chain, with id-kp-OCSPSigning: accepted.
    delegate = issue(_name("Test OCSP responder"), p.device[3], ca=False, eku=True)
    good = p.ocsp(p.device, 2, responder=delegate)
    answers = (device_answers()[0], good, device_answers()[2])
    assert verify(OcspPolicy(OcspMode.REQUIRE, responses=answers)).ok
    # The same without the EKU: refused.
    plain = issue(_name("Test OCSP responder"), p.device[3], ca=False)
    answers = (device_answers()[0], p.ocsp(p.device, 2, responder=plain), device_answers()[2])
    assert code(verify(OcspPolicy(OcspMode.REQUIRE, responses=answers))) == "gpu_ocsp_invalid"


def test_freshness() -> None:
    old = datetime.fromtimestamp(NOW, UTC) - timedelta(days=8)
    stale = device_answers(this_update=old, next_update=old + timedelta(days=30))
    assert code(verify(OcspPolicy(OcspMode.REQUIRE, responses=stale))) == "gpu_ocsp_stale"
    recent = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=2)
    expired = device_answers(this_update=recent, next_update=recent + timedelta(hours=1))
    assert code(verify(OcspPolicy(OcspMode.REQUIRE, responses=expired))) == "gpu_ocsp_stale"
    # Exactly at nextUpdate still counts; one second later it does not.
    edge = datetime.fromtimestamp(NOW - 3600, UTC)
    answers = device_answers(this_update=edge, next_update=edge + timedelta(seconds=3600))
    assert verify(OcspPolicy(OcspMode.REQUIRE, responses=answers)).ok
    late = verify(OcspPolicy(OcspMode.REQUIRE, responses=answers), at=NOW + 1)
    assert code(late) == "gpu_ocsp_stale"


def _responder(*, echo: bool = True, wrong_nonce: bool = False):  # type: ignore[no-untyped-def]
    p = pki()
    by_serial: dict[int, tuple[list[Node], int]] = {
        node.cert.serial_number: (p.device, i) for i, node in enumerate(p.device[:-1])
    }

    def handler(method: str, path: str, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        request = ocsp.load_der_ocsp_request(body)
        nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        if wrong_nonce:
            nonce = bytes(32)
        chain, index = by_serial[request.serial_number]
        return 200, "application/ocsp-response", p.ocsp(chain, index, nonce=nonce if echo else None)

    return handler


def test_fetched_answers_with_nonce_and_cache() -> None:
    with serve(_responder()) as (url, seen), httpx.Client() as client:
        clock = [float(NOW)]
        fetcher = OcspFetcher(
            client=client, clock=lambda: clock[0], nonce=lambda: b"\x07" * 32, url=url
        )
        policy = OcspPolicy(OcspMode.REQUIRE, fetcher=fetcher)
        assert verify(policy).ok
        assert len(seen) == 3 and all(m == "POST" for m, *_ in seen)
        assert seen[0][2]["content-type"] == "application/ocsp-request"
        assert verify(policy).ok
        assert len(seen) == 3  # answered from the cache until nextUpdate
        # Past nextUpdate the fetcher asks again; this responder's answer (dated NOW) is stale.
        clock[0] += 2 * 24 * 3600
        assert code(verify(policy, at=NOW + 2 * 24 * 3600)) == "gpu_ocsp_stale"
        assert len(seen) == 4


def test_fetched_answer_with_wrong_nonce() -> None:
    with serve(_responder(wrong_nonce=True)) as (url, _), httpx.Client() as client:
        fetcher = OcspFetcher(client=client, clock=lambda: NOW, nonce=lambda: b"\x07" * 32, url=url)
        result = verify(OcspPolicy(OcspMode.REQUIRE, fetcher=fetcher))
        assert code(result) == "gpu_ocsp_nonce_mismatch"


def test_unreachable_responder() -> None:
    with httpx.Client() as client:
        fetcher = OcspFetcher(
            client=client,
            clock=lambda: NOW,
            nonce=lambda: b"\x07" * 32,
            url="http://127.0.0.1:9/",
            timeout=0.5,
        )
        assert code(verify(OcspPolicy(OcspMode.REQUIRE, fetcher=fetcher))) == "gpu_ocsp_unavailable"
        assert verify(OcspPolicy(OcspMode.ALLOW_UNKNOWN, fetcher=fetcher)).ok


def _rims() -> tuple[bytes, bytes]:
    p = pki()
    return p.rim(DRIVER, range(21, 41)), p.rim("96.00.5E.00.04", range(0, 13))


BOTH = (RimKind.DRIVER, RimKind.VBIOS)


def test_rim_chain_revocation() -> None:
    p = pki()
    driver, vbios = _rims()
    rim_answers = tuple(p.ocsp(p.rim_chain, i) for i in (0, 1, 2))
    policy = OcspPolicy(OcspMode.REQUIRE, responses=device_answers() + rim_answers)
    result = verify(policy, rims=RimFiles((driver, vbios)), rims_required=BOTH)
    assert result.ok, result.error
    assert result.claims and result.claims.measurements
    assert [r.ocsp for r in result.claims.measurements.rims] == ["good", "good"]
    revoked = (p.ocsp(p.rim_chain, 0, status=ocsp.OCSPCertStatus.REVOKED), *rim_answers[1:])
    policy = OcspPolicy(OcspMode.REQUIRE, responses=device_answers() + revoked)
    result = verify(policy, rims=RimFiles((driver, vbios)), rims_required=BOTH)
    assert code(result) == "gpu_cert_revoked"
    assert result.steps[-1].name == "driver_rim"


def test_rim_directory_and_service(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    driver, vbios = _rims()
    (tmp_path / "NV_GPU_DRIVER_GH100_570.124.03.xml").write_bytes(driver)
    off = OcspPolicy(OcspMode.OFF)
    # Only the driver RIM in the bundle: the VBIOS one is missing.
    result = verify(off, rims=RimDirectory(tmp_path), rims_required=BOTH)
    assert code(result) == "gpu_rim_missing"
    monkeypatch.setenv("CLLM_GPU_RIM_API_KEY", "k-123")

    def handler(method: str, path: str, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if path == "/v1/rim/NV_GPU_VBIOS_1010_0205_862_96005E0004":
            doc = {"id": path.rsplit("/", 1)[1], "rim": base64.b64encode(vbios).decode()}
            return 200, "application/json", json.dumps(doc).encode()
        return 404, "application/json", b"{}"

    with serve(handler) as (url, seen), httpx.Client() as client:
        service = RimService(client=client, url=url)
        sources = RimSources([RimDirectory(tmp_path), service])
        assert verify(off, rims=sources, rims_required=BOTH).ok
        assert verify(off, rims=sources, rims_required=BOTH).ok
        assert len(seen) == 1  # cached
        assert seen[0][2]["authorization"] == "Bearer k-123"


def test_bit_flips_in_a_supplied_answer() -> None:
    """One bit per byte (rotating) of a good answer: never accepted, always a typed code."""
    good = device_answers()
    target = bytearray(good[2])
    for offset in range(len(target)):
        flipped = bytearray(target)
        flipped[offset] ^= 1 << (offset % 8)
        answers = (good[0], good[1], bytes(flipped))
        result = verify(OcspPolicy(OcspMode.REQUIRE, responses=answers))
        assert not result.ok, offset
        assert code(result) in {
            "gpu_ocsp_unavailable",
            "gpu_ocsp_invalid",
            "gpu_ocsp_malformed",
            "gpu_ocsp_stale",
            "gpu_ocsp_unknown",
            "gpu_cert_revoked",
        }, (offset, code(result))


def test_rim_for_another_chip_and_nvidia_pair_recognized() -> None:
    p = pki()
    driver = p.rim(DRIVER, range(21, 41), product="GB100")
    vbios = p.rim("96.00.5E.00.04", range(0, 13))
    off = OcspPolicy(OcspMode.OFF)
    result = verify(off, rims=RimFiles((driver, vbios)), rims_required=BOTH)
    assert code(result) == "gpu_rim_product_mismatch"
    # Handing NVIDIA's own pair to custom() yields the pinned roots, marked as NVIDIA.
    nvidia = nvidia_roots()
    same = type(nvidia).custom(device=nvidia.device, rim=nvidia.rim, name="mine")
    assert same is nvidia and same.is_nvidia
    assert not p.roots.is_nvidia
