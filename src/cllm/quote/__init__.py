"""DCAP quote parsing and encoding: header, TD report 1.0/1.5 (v4, v5), SGX enclave report (v3),
signature data, QE report, certification data and the PCK certificate's SGX extension."""

from cllm.quote import _layout as layout
from cllm.quote._encode import (
    encode_certification_data,
    encode_enclave_report,
    encode_header,
    encode_quote,
    encode_signature_data,
    encode_signed_data,
    encode_td_report,
)
from cllm.quote._model import (
    CertificationData,
    EnclaveReport,
    Quote,
    QuoteHeader,
    QuoteSignatureData,
    TdReport,
)
from cllm.quote._parse import parse_enclave_report, parse_quote
from cllm.quote._pck import (
    PckExtensions,
    encode_sgx_extension,
    parse_pck_chain,
    parse_pck_extensions,
    parse_sgx_extension,
)

__all__ = [
    "CertificationData",
    "EnclaveReport",
    "PckExtensions",
    "Quote",
    "QuoteHeader",
    "QuoteSignatureData",
    "TdReport",
    "encode_certification_data",
    "encode_enclave_report",
    "encode_header",
    "encode_quote",
    "encode_sgx_extension",
    "encode_signature_data",
    "encode_signed_data",
    "encode_td_report",
    "layout",
    "parse_enclave_report",
    "parse_pck_chain",
    "parse_pck_extensions",
    "parse_quote",
    "parse_sgx_extension",
]
