"""The whole verification pipeline on mutated real quotes and collateral: it always returns a
result (never raises), and never says ok for bytes that differ in a signed region."""

from __future__ import annotations

from functools import cache

from hypothesis import given
from hypothesis import strategies as st

from cllm.verify import Collateral, QuoteVerifier, intel_root, load_collateral
from fuzzing import budget
from vectors import case, read, require_vectors

CASE = "gotdxguest-cos113@20250604"


@cache
def _setup() -> tuple[bytes, Collateral, int, QuoteVerifier]:
    entry = case(CASE)
    collateral = load_collateral(require_vectors() / entry["collateral"])
    return read(entry["quote"]), collateral, entry["at"], QuoteVerifier(trust_root=intel_root())


@budget(3000)
@given(st.data())
def test_mutated_quote_never_crashes_the_pipeline(data: st.DataObject) -> None:
    quote, collateral, at, verifier = _setup()
    mutated = bytearray(quote)
    for _ in range(data.draw(st.integers(1, 4))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    result = verifier.verify(bytes(mutated), collateral, at=at)
    assert result.error is None or result.error.code != "internal_error", result.error
    if result.ok:
        # Only bytes outside the signed regions may change: the certification data's PEM text
        # (its certificates are checked by signature) or the trailing NUL.
        parsed = result.quote
        assert parsed is not None
        signed_end = parsed.signature_data_offset + 64 + 64 + 6 + 384 + 64 + 2 + 32
        assert bytes(mutated[:signed_end]) == quote[:signed_end]


@budget(1000)
@given(st.sampled_from(["tcb_info", "qe_identity", "pck_crl", "root_ca_crl"]), st.data())
def test_mutated_collateral_never_crashes_the_pipeline(field: str, data: st.DataObject) -> None:
    quote, collateral, at, verifier = _setup()
    from dataclasses import replace

    value = bytearray(getattr(collateral, field))
    value[data.draw(st.integers(0, len(value) - 1))] = data.draw(st.integers(0, 255))
    result = verifier.verify(quote, replace(collateral, **{field: bytes(value)}), at=at)
    assert result.error is None or result.error.code != "internal_error", result.error
    if bytes(value) != getattr(collateral, field):
        assert not result.ok
