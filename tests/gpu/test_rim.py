"""RIMs: every corpus RIM's verdict at its time, one second past its signer's expiry, the narrow
signature profile, edits after signing, bit flips in the signed regions, and the appraisals."""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest

from cllm.errors import CllmError
from cllm.gpu import GpuVerifier, nvidia_roots, parse_report
from cllm.gpu._appraise import appraise
from cllm.gpu._rim import parse_rim
from gpu_vectors import at, doc, evidence, params, read

RIM_CODES = {
    "gpu_rim_malformed",
    "gpu_rim_digest_mismatch",
    "gpu_rim_signature_invalid",
    "gpu_rim_chain_invalid",
    "gpu_rim_chain_untrusted",
}
VERDICT_CODES = {
    "reject: RIM digest mismatch": "gpu_rim_digest_mismatch",
    "reject: cert 0 issuer != cert 1 subject": "gpu_rim_chain_invalid",
    "reject: RIM signature does not verify under the KeyInfo leaf": "gpu_rim_signature_invalid",
}


@functools.cache
def verifier() -> GpuVerifier:
    return GpuVerifier(roots=nvidia_roots())


def verify_code(data: bytes, when: int) -> str | None:
    try:
        verifier().verify_rim(data, at=when)
    except CllmError as exc:
        return exc.code
    return None


@pytest.mark.parametrize("case", params(doc()["rims"], key="rim"))
def test_rim_case(case: dict[str, Any]) -> None:
    data = read(case["rim"])
    if case["verdict"] != "valid":
        assert verify_code(data, at(case)) == VERDICT_CODES[case["verdict"]]
        return
    rim, expires = verifier().verify_rim(data, at=at(case))
    assert str(rim.kind) == case["kind"]
    assert rim.version == case["version"]
    assert list(rim.active_indices) == case["active_indices"]
    not_after = at(case, "signer_not_after")
    assert expires == not_after
    # Valid through the signer's last second, expired one second later.
    verifier().verify_rim(data, at=not_after)
    assert verify_code(data, not_after + 1) == "gpu_rim_cert_expired"


def _driver() -> bytes:
    return read("rims/Driver_RIM_test_no_gpu.swidtag")


WHEN = 1690500000


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # Golden values edited after signing.
        (b'index="21" active="True"', b'index="21" active="False"', "gpu_rim_digest_mismatch"),
        (b'colloquialVersion="545.00"', b'colloquialVersion="550.00"', "gpu_rim_digest_mismatch"),
        # The narrow profile: anything else in the signature is refused before any crypto.
        (b'<ds:Reference URI="">', b'<ds:Reference URI="#x">', "gpu_rim_malformed"),
        (b"xmldsig-more#ecdsa-sha384", b"xmldsig-more#ecdsa-sha256", "gpu_rim_malformed"),
        (
            b'Algorithm="http://www.w3.org/2006/12/xml-c14n11"/></ds:Transforms>',
            b'Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>',
            "gpu_rim_malformed",
        ),
        (b"<ds:KeyInfo>", b"<ds:Object/><ds:KeyInfo>", "gpu_rim_malformed"),
        (b'tagVersion="0"', b'tagVersion="0" xml:id="a"', "gpu_rim_malformed"),
    ],
)
def test_rim_edits(old: bytes, new: bytes, expected: str) -> None:
    data = _driver()
    assert data.count(old) == 1
    assert verify_code(data.replace(old, new), WHEN) == expected


def test_second_signature_or_doctype_refused() -> None:
    data = _driver()
    start = data.index(b"<ds:Signature")
    signature = data[start : data.index(b"</ds:Signature>") + len(b"</ds:Signature>")]
    doubled = data.replace(b"<ns0:Payload", signature + b"<ns0:Payload", 1)
    assert verify_code(doubled, WHEN) == "gpu_rim_malformed"
    entity = b'<!DOCTYPE x [<!ENTITY e "545.00">]>' + data
    assert verify_code(entity, WHEN) == "gpu_rim_malformed"
    assert verify_code(b"<not-xml", WHEN) == "gpu_rim_malformed"
    assert verify_code(b"x" * (1 << 20 + 1), WHEN) == "gpu_rim_malformed"


def _flip(data: bytes, offset: int, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[offset] ^= 1 << bit
    return bytes(flipped)


def test_every_bit_flip_in_signed_info_is_rejected() -> None:
    data = _driver()
    start = data.index(b"<ds:SignedInfo>")
    end = data.index(b"</ds:SignatureValue>")
    for offset in range(start, end):
        for bit in range(8):
            found = verify_code(_flip(data, offset, bit), WHEN)
            assert found in RIM_CODES, (offset, bit, found)


def test_bit_flips_in_the_signed_document_are_rejected() -> None:
    """One bit in every fifth byte, rotating, over the document the Reference digests. (A flip
    in a root namespace declaration changes SignedInfo's inclusive C14N too: signature_invalid.)
    """
    data = _driver()
    end = data.index(b"<ds:Signature")
    for offset in range(0, end, 5):
        found = verify_code(_flip(data, offset, offset % 8), WHEN)
        assert found in RIM_CODES, (offset, found)


def test_bit_flips_in_the_signing_chain_are_rejected() -> None:
    data = _driver()
    start = data.index(b"<ds:X509Data>")
    end = data.index(b"</ds:X509Data>")
    for offset in range(start, end, 2):
        found = verify_code(_flip(data, offset, offset % 8), WHEN)
        assert found in RIM_CODES, (offset, found)


@pytest.mark.parametrize("case", params(doc()["appraisals"], key="note"))
def test_appraisal_case(case: dict[str, Any]) -> None:
    entry = evidence(case["evidence"])
    report = parse_report(read(entry["report"]), allow_trailing_zeros=entry["trailing_bytes"] > 0)
    root = nvidia_roots().rim_der
    rims = tuple(
        parse_rim(read(path), root_der=root)
        for path in (case["driver_rim"], case["vbios_rim"])
        if path
    )
    result = appraise(report, rims)
    assert list(result.mismatched_indices) == case["mismatched_indices"]
    assert result.matched == (not case["mismatched_indices"])


def test_index_conflict() -> None:
    root = nvidia_roots().rim_der
    rim = parse_rim(_driver(), root_der=root)
    report = parse_report(read("reports/712fc6408be614ce.bin"))
    with pytest.raises(CllmError) as caught:
        appraise(report, (rim, rim))
    assert caught.value.code == "gpu_rim_index_conflict"


def test_nvdec0_rule() -> None:
    """Index 35 is skipped only when NVDEC0 is disabled (0x55) in the signed opaque data."""
    root = nvidia_roots().rim_der
    rim = parse_rim(_driver(), root_der=root)
    data = read("reports/712fc6408be614ce.bin")
    report = parse_report(data)
    assert report.opaque.nvdec0_status == 0x55
    assert 35 in appraise(report, (rim,)).skipped_indices
    marker = bytes([11, 0, 1, 0, 0x55])
    assert data.count(marker) == 1
    enabled = parse_report(data.replace(marker, bytes([11, 0, 1, 0, 0xAA])))
    outcome = appraise(enabled, (rim,))
    assert 35 in outcome.appraised_indices and not outcome.skipped_indices
    assert re.fullmatch(r"[0-9]+", str(len(outcome.appraised_indices)))
