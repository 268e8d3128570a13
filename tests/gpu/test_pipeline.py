"""The GPU pipeline on the real corpus: every evidence case at its time with its claims, and
the attacks: wrong nonce, chains of 4 or 6, a foreign root, a swapped leaf or chain, single-bit
flips in every signed region, each rejected by the step that guards it, with its code."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cllm.errors import GpuEvidenceFormatError
from cllm.gpu import (
    NO_RIMS,
    GpuArch,
    GpuVerification,
    GpuVerifier,
    OcspMode,
    OcspPolicy,
    RimFiles,
    RimKind,
    nvidia_roots,
    parse_report,
    verify_gpu_evidence,
)
from gpu_vectors import at, doc, evidence, params, read

OFF = OcspPolicy(OcspMode.OFF)
CHAIN_CODES = {"gpu_chain_malformed", "gpu_chain_invalid", "gpu_chain_untrusted"}
PARSE_CODES = {"gpu_report_malformed", "gpu_report_truncated", "gpu_opaque_malformed"}


@functools.cache
def verifier() -> GpuVerifier:
    return GpuVerifier(roots=nvidia_roots())


def run(
    case: dict[str, Any],
    *,
    report: bytes | None = None,
    chain: bytes | str | None = None,
    nonce: bytes | None = None,
    **kwargs: Any,
) -> GpuVerification:
    options: dict[str, Any] = {
        "rims": NO_RIMS,
        "rims_required": (),
        "ocsp": OFF,
        "at": at(case),
        "allow_trailing_zeros": case["trailing_bytes"] > 0,
    }
    options.update(kwargs)
    return verifier().verify(
        report if report is not None else read(case["report"]),
        chain=chain if chain is not None else read(case["chain"]),
        expected_nonce=nonce if nonce is not None else bytes.fromhex(case["expected_nonce"]),
        **options,
    )


def code(result: GpuVerification) -> str | None:
    return result.error.code if result.error else None


@pytest.mark.parametrize("case", params(doc()["evidence"]))
def test_evidence_case(case: dict[str, Any]) -> None:
    result = run(case)
    if case["verdict"] == "valid":
        assert result.ok, result.error
        assert [s.name for s in result.steps][-1] == "measurements"
    else:
        assert case["verdict"] == "reject: opaque FWID"
        assert code(result) == "gpu_fwid_mismatch"
    claims = result.claims
    assert claims is not None
    produced = claims.to_dict()
    for name, expected in case["claims"].items():
        assert produced[name] == expected, name
    assert claims.arch == case["arch"]
    assert claims.nvidia_hardware and claims.roots == "NVIDIA"
    flag = case["claims"]["feature_flag"]
    assert claims.mode == {None: None, "0000": "SPT", "0100": "MPT", "0200": "PPCIE"}[flag]


def test_nras_token_claims_cross_check() -> None:
    """NVIDIA's own service said of report c438e7e7 what the pipeline says (its signature
    cannot be checked offline; only the claims are compared)."""
    import base64
    import json

    token_doc = json.loads(read("nras/hopperClaimsv3_detached_eat.json"))
    case = evidence(doc()["nras"][0]["evidence"])
    result = run(case)
    assert result.ok and result.claims is not None
    gpu_jwt = next(iter(token_doc[1].values()))
    payload = gpu_jwt.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["ueid"] == result.claims.ueid
    assert claims["hwmodel"] == result.claims.hwmodel
    assert claims["x-nvidia-gpu-driver-version"] == result.claims.driver_version
    assert claims["x-nvidia-gpu-vbios-version"].upper() == result.claims.vbios_version
    assert claims["eat_nonce"] == doc()["nras"][0]["expected_nonce"] == result.claims.nonce


def test_trailing_zero_refused_unless_allowed() -> None:
    case = evidence("d414ec6b6ec1fa0e")
    result = run(case, allow_trailing_zeros=False)
    assert code(result) == "gpu_report_trailing_bytes" and result.input_unusable
    assert run(case).ok


def test_wrong_nonce() -> None:
    case = evidence("c438e7e714c05a9b")
    nonce = bytearray.fromhex(case["expected_nonce"])
    nonce[31] ^= 1
    result = run(case, nonce=bytes(nonce))
    assert code(result) == "gpu_nonce_mismatch"
    assert result.steps[-1].name == "nonce"


def _certs(case: dict[str, Any]) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(read(case["chain"]))


def _pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def test_four_or_six_certificates() -> None:
    case = evidence("c438e7e714c05a9b")
    certs = _certs(case)
    assert code(run(case, chain=_pem(certs[:2] + certs[3:]))) == "gpu_chain_length"
    assert code(run(case, chain=_pem(certs[:3] + certs[2:]))) == "gpu_chain_length"


def _self_signed(name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA384())
    )


def test_foreign_root() -> None:
    case = evidence("c438e7e714c05a9b")
    certs = _certs(case)
    result = run(case, chain=_pem([*certs[:4], _self_signed("NVIDIA Device Identity CA")]))
    assert code(result) == "gpu_chain_untrusted"


def test_swapped_leaf_and_swapped_chain() -> None:
    case = evidence("c438e7e714c05a9b")
    other = _certs(evidence("07ac943593fc66eb"))
    # Another GPU's leaf on this chain: the link to this GPU's BROM CA fails.
    assert code(run(case, chain=_pem(other[:1] + _certs(case)[1:]))) == "gpu_chain_invalid"
    # Another GPU's whole chain with the same FWID: the report signature fails.
    same_fwid = evidence("000f65b064feded9")
    result = run(same_fwid, chain=read(evidence("1d2ab387d41d7b2d")["chain"]))
    assert code(result) == "gpu_report_signature_invalid"
    # And with a different FWID: the FWID check stops it first.
    assert code(run(case, chain=_pem(other))) == "gpu_fwid_mismatch"


def test_declared_arch_must_agree() -> None:
    case = evidence("c438e7e714c05a9b")
    assert code(run(case, declared_arch=GpuArch.BLACKWELL)) == "gpu_arch_mismatch"
    assert run(case, declared_arch=GpuArch.HOPPER).ok


def test_require_fwid() -> None:
    case = evidence("30cddcd0b0cd5925")  # 535.86.09: no FWID in the opaque data
    assert code(run(case, require_fwid=True)) == "gpu_fwid_missing"


@functools.cache
def _guarded_spans(case_id: str) -> dict[str, tuple[int, int]]:
    """Absolute byte ranges of the FWID and GPU_INFO values in a corpus report."""
    case = evidence(case_id)
    original = parse_report(read(case["report"]), allow_trailing_zeros=case["trailing_bytes"] > 0)
    base = original.signature_offset - len(original.opaque_raw)
    raw = original.opaque_raw
    spans: dict[str, tuple[int, int]] = {}
    pos = 0
    while pos < len(raw):
        field_type = int.from_bytes(raw[pos : pos + 2], "little")
        size = int.from_bytes(raw[pos + 2 : pos + 4], "little")
        start = base + pos + 4
        if field_type == 20:
            spans["gpu_fwid_mismatch"] = (start, start + size)
        if field_type == 4:
            spans["gpu_arch_mismatch"] = (start, start + size)
        pos += 4 + size
    return spans


def _expected_flip_code(case: dict[str, Any], data: bytes, offset: int) -> str:
    try:
        report = parse_report(data, allow_trailing_zeros=case["trailing_bytes"] > 0)
    except GpuEvidenceFormatError as exc:
        return exc.code
    if (report.is_gsp and bool(report.opaque.fields)) != (case["opaque_length"] > 0):
        return "gpu_arch_mismatch"  # no longer the report shape this key signs
    for name, (start, end) in _guarded_spans(case["id"]).items():
        if start <= offset < end and report.opaque.get(20 if "fwid" in name else 4) is not None:
            return name
    return "gpu_report_signature_invalid"


@pytest.mark.parametrize(
    ("case_id", "stride"),
    [("c438e7e714c05a9b", 1), ("5fec340fd11c818e", 8), ("8e2b5f1a6e1db368", 8)],
)
def test_every_bit_flip_in_the_report_is_rejected(case_id: str, stride: int) -> None:
    """Every bit (stride 1) or one bit per byte, rotating (stride 8), of the signed bytes and
    the signature: rejected, with the code of the parser or of the check guarding that byte."""
    case = evidence(case_id)
    data = read(case["report"])
    for bit in range(0, len(data) * 8, stride):
        offset, shift = divmod(bit if stride == 1 else bit + (bit // 8) % 8, 8)
        flipped = bytearray(data)
        flipped[offset] ^= 1 << shift
        result = run(case, report=bytes(flipped))
        assert not result.ok, (offset, shift)
        assert code(result) == _expected_flip_code(case, bytes(flipped), offset), (offset, shift)


@pytest.mark.filterwarnings(
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)
def test_bit_flips_in_chain_certificates_are_rejected() -> None:
    """Every bit of the leaf and of the per-GPU CA (the certificates that name this GPU, its
    key and its FWID), one bit per byte (rotating) of the three CAs above: the chain step
    rejects each."""
    case = evidence("c438e7e714c05a9b")
    certs = _certs(case)
    ders = [c.public_bytes(serialization.Encoding.DER) for c in certs]
    for index, der in enumerate(ders):
        flips = (
            [(o, b) for o in range(len(der)) for b in range(8)]
            if index < 2
            else [(o, o % 8) for o in range(len(der))]
        )
        for offset, bit in flips:
            flipped = bytearray(der)
            flipped[offset] ^= 1 << bit
            pems = [_der_pem(flipped if i == index else d) for i, d in enumerate(ders)]
            result = run(case, chain=b"".join(pems))
            assert not result.ok
            assert code(result) in CHAIN_CODES, (index, offset, code(result))
            assert result.steps[-1].name == "device_chain"
            if index == 4 and code(result) != "gpu_chain_malformed":
                assert code(result) == "gpu_chain_untrusted"


def _der_pem(der: bytes | bytearray) -> bytes:
    import base64

    body = base64.encodebytes(bytes(der)).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def test_full_appraisal_and_rim_attacks() -> None:
    case = evidence("712fc6408be614ce")
    driver = read("rims/Driver_RIM_test_no_gpu.swidtag")
    vbios = read("rims/1010_0200_882_96005E0001_test_no_gpu.swidtag")
    both = (RimKind.DRIVER, RimKind.VBIOS)
    when = 1690500000  # both signers valid (2023-07-27 .. 2025-06-22)
    result = run(case, rims=RimFiles((driver, vbios)), rims_required=both, at=when)
    assert result.ok, result.error
    measurements = result.claims and result.claims.measurements
    assert measurements and measurements.matched and measurements.mismatched_indices == ()
    assert measurements.skipped_indices == (35,)  # NVDEC0 disabled in this report
    # The PROD VBIOS RIM of the same version: indices 1, 2, 3, 9 differ.
    prod = read("rims/1010_0200_882_96005E0001_PROD.swidtag")
    result = run(case, rims=RimFiles((driver, prod)), rims_required=both, at=when)
    assert code(result) == "gpu_measurement_mismatch"
    assert result.claims and result.claims.measurements
    assert result.claims.measurements.mismatched_indices == (1, 2, 3, 9)
    # A RIM for another version.
    other = read("rims/1010_0200_882_96005E0003_PROD.swidtag")
    result = run(case, rims=RimFiles((driver, other)), rims_required=both, at=1696600000)
    assert code(result) == "gpu_rim_version_mismatch"
    # Missing RIM when required.
    result = run(case, rims=RimFiles((driver,)), rims_required=both, at=when)
    assert code(result) == "gpu_rim_missing"
    # A RIM edited after signing.
    edited = driver.replace(b'index="7" active="True"', b'index="7" active="False"')
    assert edited != driver
    result = run(case, rims=RimFiles((edited, vbios)), rims_required=both, at=when)
    assert code(result) == "gpu_rim_digest_mismatch"
    # One second past the VBIOS RIM signer's expiry (2025-06-22T09:38:54Z).
    expiry = 1750585134
    assert code(run(case, rims=RimFiles((driver, vbios)), rims_required=both, at=expiry)) in (
        None,
        "gpu_rim_cert_expired",  # the driver RIM's signer (2025-06-26) outlives it: only VBIOS
    )
    result = run(case, rims=RimFiles((driver, vbios)), rims_required=both, at=expiry + 1)
    assert code(result) == "gpu_rim_cert_expired"


def test_module_function_uses_injected_roots() -> None:
    case = evidence("c438e7e714c05a9b")
    result = verify_gpu_evidence(
        read(case["report"]),
        chain=read(case["chain"]),
        expected_nonce=bytes.fromhex(case["expected_nonce"]),
        rims=NO_RIMS,
        rims_required=(),
        ocsp=OFF,
        at=at(case),
        roots=nvidia_roots(),
    )
    assert result.ok
