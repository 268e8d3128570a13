"""Parser fuzzing (hypothesis): whatever the bytes, parsing either succeeds or raises
QuoteFormatError, never IndexError, struct.error, ValueError or a hang.

Budget: 100,000+ inputs in total across the tests below (CLLM_FUZZ_SCALE scales it).
Seeds are quotes built here, plus the real-hardware quotes when the corpus is present.
"""

from __future__ import annotations

from functools import cache

import pytest
import samples
from hypothesis import given
from hypothesis import strategies as st

from cllm.errors import QuoteFormatError
from cllm.quote import Quote, parse_pck_chain, parse_pck_extensions, parse_quote
from cllm.quote._pck import parse_sgx_extension
from fuzzing import budget
from vectors import cases, vectors_dir


@cache
def _seeds() -> tuple[bytes, ...]:
    built = list(samples.every_kind().values())
    root = vectors_dir()
    if root is not None:
        seen = {entry["quote"] for entry in cases()}
        built += [(root / path).read_bytes() for path in sorted(seen)]
    return tuple(built)


def _parse_everything(data: bytes) -> Quote | None:
    """Parse the quote and, if that works, its PCK chain and the chain's SGX extension."""
    try:
        quote = parse_quote(data)
    except QuoteFormatError as exc:
        assert 0 <= exc.offset <= len(data)
        return None
    try:
        chain = parse_pck_chain(quote.signature_data.certification)
        parse_pck_extensions(chain[0])
    except QuoteFormatError:
        pass
    return quote


@budget(20_000)
@given(st.binary(max_size=1200))
def test_random_bytes(data: bytes) -> None:
    _parse_everything(data)


@st.composite
def mutated_quotes(draw: st.DrawFn) -> bytes:
    seeds = _seeds()
    data = bytearray(seeds[draw(st.integers(0, len(seeds) - 1))])
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["byte", "u32", "cut", "extend"]))
        if kind == "u32" and len(data) < 4:
            kind = "extend"
        if kind == "byte":
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "u32":
            # Length fields are where parsers break: write boundary values into them.
            at = draw(st.integers(0, len(data) - 4))
            value = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, len(data), 6000]))
            data[at : at + 4] = value.to_bytes(4, "little")
        elif kind == "cut":
            del data[draw(st.integers(0, len(data))) :]
        else:
            data += draw(st.binary(min_size=1, max_size=64))
        if not data:
            break
    return bytes(data)


# Mutated certificates may carry a non-positive serial, which cryptography warns about on load
# and parse_pck_chain then rejects.
@pytest.mark.filterwarnings(
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)
@budget(70_000)
@given(mutated_quotes())
def test_mutated_quotes(data: bytes) -> None:
    _parse_everything(data)


@cache
def _sgx_extension_seed() -> bytes:
    root = vectors_dir()
    if root is None:
        return bytes.fromhex("3000")
    from cllm.quote._pck import SGX_EXTENSIONS_OID

    quote = parse_quote((root / cases()[0]["quote"]).read_bytes())
    leaf = parse_pck_chain(quote.signature_data.certification)[0]
    value = leaf.extensions.get_extension_for_oid(SGX_EXTENSIONS_OID).value
    return bytes(value.public_bytes())


@st.composite
def mutated_extensions(draw: st.DrawFn) -> bytes:
    data = bytearray(_sgx_extension_seed())
    for _ in range(draw(st.integers(1, 4))):
        if data and draw(st.booleans()):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        else:
            del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


@budget(10_000)
@given(st.one_of(st.binary(max_size=300), mutated_extensions()))
def test_sgx_extension_der(data: bytes) -> None:
    try:
        parse_sgx_extension(data)
    except QuoteFormatError as exc:
        assert exc.code == "pck_extension_malformed"
