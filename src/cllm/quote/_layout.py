"""Byte layout constants of DCAP quotes v3/v4/v5.

Names follow Intel's SGX-TDX-DCAP-QuoteVerificationLibrary (QuoteStructures.h, QuoteConstants.h)
and the Intel TDX DCAP Quoting Library API, appendix A.3. All integers are little-endian.
"""

from __future__ import annotations

from typing import Final

# Quote versions and TEE types.
QUOTE_V3: Final = 3
QUOTE_V4: Final = 4
QUOTE_V5: Final = 5
SUPPORTED_VERSIONS: Final = (QUOTE_V3, QUOTE_V4, QUOTE_V5)
TEE_TYPE_SGX: Final = 0x00000000
TEE_TYPE_TDX: Final = 0x00000081
ATTESTATION_KEY_ECDSA_P256: Final = 2
ATTESTATION_KEY_ECDSA_P384: Final = 3  # reserved by Intel, never produced
INTEL_QE_VENDOR_ID: Final = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

# Header (48 bytes).
HEADER_SIZE: Final = 48
HDR_VERSION: Final = 0x00
HDR_ATT_KEY_TYPE: Final = 0x02
HDR_TEE_TYPE: Final = 0x04
HDR_QE_SVN: Final = 0x08
HDR_PCE_SVN: Final = 0x0A
HDR_QE_VENDOR_ID: Final = 0x0C
HDR_USER_DATA: Final = 0x1C
QE_VENDOR_ID_SIZE: Final = 16
USER_DATA_SIZE: Final = 20

# v5 body descriptor: u16 body type, u32 body size, then the body.
V5_BODY_DESCRIPTOR_SIZE: Final = 6
BODY_TYPE_SGX_ENCLAVE_REPORT: Final = 1
BODY_TYPE_TD_REPORT_10: Final = 2
BODY_TYPE_TD_REPORT_15: Final = 3

# SGX enclave report (384 bytes; also the QE report).
ENCLAVE_REPORT_SIZE: Final = 384
ER_CPU_SVN: Final = 0x000
ER_MISC_SELECT: Final = 0x010
ER_ATTRIBUTES: Final = 0x030
ER_MR_ENCLAVE: Final = 0x040
ER_MR_SIGNER: Final = 0x080
ER_ISV_PROD_ID: Final = 0x100
ER_ISV_SVN: Final = 0x102
ER_REPORT_DATA: Final = 0x140

# TD report (584 bytes for TD report 1.0, 648 for 1.5).
TD_REPORT_10_SIZE: Final = 584
TD_REPORT_15_SIZE: Final = 648
TD_TEE_TCB_SVN: Final = 0x000
TD_MR_SEAM: Final = 0x010
TD_MR_SIGNER_SEAM: Final = 0x040
TD_SEAM_ATTRIBUTES: Final = 0x070
TD_TD_ATTRIBUTES: Final = 0x078
TD_XFAM: Final = 0x080
TD_MRTD: Final = 0x088
TD_MR_CONFIG_ID: Final = 0x0B8
TD_MR_OWNER: Final = 0x0E8
TD_MR_OWNER_CONFIG: Final = 0x118
TD_RTMR0: Final = 0x148
TD_RTMR1: Final = 0x178
TD_RTMR2: Final = 0x1A8
TD_RTMR3: Final = 0x1D8
TD_REPORT_DATA: Final = 0x208
TD_TEE_TCB_SVN2: Final = 0x248  # TD report 1.5 only
TD_MR_SERVICETD: Final = 0x258  # TD report 1.5 only

# TD_ATTRIBUTES bits (TDX module spec, table "TD_ATTRIBUTES").
TD_ATTR_DEBUG_BIT: Final = 0
TD_ATTR_SEPT_VE_DISABLE_BIT: Final = 28

# Signature data ("ECDSA 256-bit quote auth data").
SIG_DATA_LEN_SIZE: Final = 4
ECDSA_SIGNATURE_SIZE: Final = 64  # r || s, 32 bytes each, big-endian
ECDSA_P256_KEY_SIZE: Final = 64  # x || y, 32 bytes each, big-endian

# Certification data types (QuoteConstants.h).
CERT_PPID_CLEARTEXT: Final = 1
CERT_PPID_RSA2048_OAEP: Final = 2
CERT_PPID_RSA3072_OAEP: Final = 3
CERT_PCK_LEAF: Final = 4
CERT_PCK_CHAIN: Final = 5
CERT_QE_REPORT: Final = 6
CERT_PLATFORM_MANIFEST: Final = 7
