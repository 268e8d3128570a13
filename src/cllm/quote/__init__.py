"""DCAP quote parsing and encoding: header, TD report 1.0/1.5 (v4, v5), SGX enclave report (v3),
signature data, QE report, certification data and the PCK certificate's SGX extension."""

from cllm.quote import _layout as layout
from cllm.quote._encode import encode_enclave_report, encode_quote, encode_signed_data
from cllm.quote._model import (
    CertificationData,
    EnclaveReport,
    Quote,
    QuoteHeader,
    QuoteSignatureData,
    TdReport,
)
from cllm.quote._parse import parse_quote
from cllm.quote._pck import (
    PckExtensions,
    encode_sgx_extension,
    parse_pck_chain,
    parse_pck_extensions,
)

__all__ = [
    "CertificationData",
    "EnclaveReport",
    "PckExtensions",
    "Quote",
    "QuoteHeader",
    "QuoteSignatureData",
    "TdReport",
    "encode_enclave_report",
    "encode_quote",
    "encode_sgx_extension",
    "encode_signed_data",
    "layout",
    "parse_pck_chain",
    "parse_pck_extensions",
    "parse_quote",
]
