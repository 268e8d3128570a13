"""Structurally valid quotes built field by field (no real signatures): parser tests and fuzz
seeds that do not need the real-hardware corpus. Each field is filled with a distinct byte so a
wrong offset shows up as a wrong value."""

from __future__ import annotations

import struct

from cllm.quote import layout as L

PEM = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\0"


def fill(size: int, tag: int) -> bytes:
    return bytes((tag + i) % 256 for i in range(size))


def header(version: int, tee_type: int, key_type: int = L.ATTESTATION_KEY_ECDSA_P256) -> bytes:
    return (
        struct.pack("<HHIHH", version, key_type, tee_type, 0x0A, 0x0F)
        + L.INTEL_QE_VENDOR_ID
        + fill(L.USER_DATA_SIZE, 0x50)
    )


def qe_report_part(cert_type: int = L.CERT_PCK_CHAIN, cert_data: bytes = PEM) -> bytes:
    auth = fill(32, 0)
    return (
        fill(L.ENCLAVE_REPORT_SIZE, 0x30)
        + fill(64, 0x31)
        + struct.pack("<H", len(auth))
        + auth
        + struct.pack("<HI", cert_type, len(cert_data))
        + cert_data
    )


def signature_data(version: int, cert_type: int = L.CERT_PCK_CHAIN) -> bytes:
    sig_and_key = fill(64, 0x10) + fill(64, 0x20)
    inner = qe_report_part(cert_type)
    if version == L.QUOTE_V3:
        return sig_and_key + inner
    return sig_and_key + struct.pack("<HI", L.CERT_QE_REPORT, len(inner)) + inner


def quote(version: int = 4, *, tdx: bool = True, body_type: int | None = None) -> bytes:
    tee_type = L.TEE_TYPE_TDX if tdx else L.TEE_TYPE_SGX
    if version == L.QUOTE_V5:
        body_type = body_type or (
            L.BODY_TYPE_TD_REPORT_15 if tdx else L.BODY_TYPE_SGX_ENCLAVE_REPORT
        )
        size = {1: L.ENCLAVE_REPORT_SIZE, 2: L.TD_REPORT_10_SIZE, 3: L.TD_REPORT_15_SIZE}[body_type]
        body = struct.pack("<HI", body_type, size) + fill(size, 0x80)
    else:
        body = fill(L.TD_REPORT_10_SIZE if tdx else L.ENCLAVE_REPORT_SIZE, 0x80)
    sig = signature_data(version)
    return header(version, tee_type) + body + struct.pack("<I", len(sig)) + sig


def every_kind() -> dict[str, bytes]:
    """One built quote of each version, TEE and v5 body type, by a short name."""
    return {
        "v3-sgx": quote(3, tdx=False),
        "v4-tdx": quote(4),
        "v4-sgx": quote(4, tdx=False),
        "v5-td15": quote(5),
        "v5-td10": quote(5, body_type=2),
        "v5-sgx": quote(5, tdx=False),
    }
