"""Several GPUs at once: NVIDIA's real four-GPU capture (one nonce) verifies as a set; the same
GPU twice, mixed architectures and an empty set are refused with their codes."""

from __future__ import annotations

from typing import Any

from cllm.gpu import NO_RIMS, GpuVerifier, OcspMode, OcspPolicy, nvidia_roots, verify_bundle
from gpu_vectors import at, evidence, read

FOUR = ("000f65b064feded9", "206df72a37ac9327", "b4175f4c983b68ba", "f42c7f534ba52d78")
OFF = OcspPolicy(OcspMode.OFF)


def _bundle(ids: tuple[str, ...], nonce: str | None = None) -> Any:
    cases = [evidence(i) for i in ids]
    return verify_bundle(
        GpuVerifier(roots=nvidia_roots()),
        [(read(c["report"]), read(c["chain"])) for c in cases],
        expected_nonce=bytes.fromhex(nonce or cases[0]["expected_nonce"]),
        rims=NO_RIMS,
        rims_required=(),
        ocsp=OFF,
        at=at(cases[0]),
    )


def test_four_gpu_capture() -> None:
    result = _bundle(FOUR)
    assert result.ok, result.error
    assert len({r.claims.ueid for r in result.results}) == 4
    assert result.to_dict()["ok"] is True


def test_same_gpu_twice() -> None:
    assert _bundle((FOUR[0], FOUR[0])).error.code == "gpu_bundle_duplicate_device"


def test_mixed_architectures() -> None:
    result = _bundle(("c438e7e714c05a9b", "5fec340fd11c818e"))
    assert result.error.code == "gpu_bundle_mixed_arch"


def test_one_bad_gpu_fails_the_set() -> None:
    result = _bundle(("c438e7e714c05a9b", "53e055089160152f"))
    assert result.error.code == "gpu_fwid_mismatch"
    assert result.error.message.startswith("GPU 1:")


def test_empty() -> None:
    result = verify_bundle(
        GpuVerifier(roots=nvidia_roots()),
        [],
        expected_nonce=bytes(32),
        rims=NO_RIMS,
        rims_required=(),
        ocsp=OFF,
        at=0,
    )
    assert not result.ok and result.error.code == "gpu_bundle_empty"
