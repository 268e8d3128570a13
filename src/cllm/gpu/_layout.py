"""Byte layout of an NVIDIA GPU attestation report: one SPDM 1.1 GET_MEASUREMENTS request
followed by its MEASUREMENTS response (DMTF DSP0274 1.1, sections 10.11 and 10.11.1), with
NVIDIA's opaque data. All integers are little-endian; offsets are absolute (request included).
"""

from __future__ import annotations

from typing import Final

SPDM_VERSION_11: Final = 0x11
GET_MEASUREMENTS: Final = 0xE0
MEASUREMENTS: Final = 0x60
PARAM1_SIGNATURE_REQUESTED: Final = 0x01
PARAM2_ALL_BLOCKS: Final = 0xFF

# Request (37 bytes).
REQ_VERSION: Final = 0
REQ_CODE: Final = 1
REQ_PARAM1: Final = 2
REQ_PARAM2: Final = 3
REQ_NONCE: Final = 4
REQ_SLOT_ID: Final = 36
REQUEST_SIZE: Final = 37
NONCE_SIZE: Final = 32

# Response header, then the variable parts.
RSP_VERSION: Final = 37
RSP_CODE: Final = 38
RSP_PARAM1: Final = 39
RSP_PARAM2: Final = 40
RSP_NUMBER_OF_BLOCKS: Final = 41
RSP_RECORD_LENGTH: Final = 42  # 3 bytes
RSP_RECORD: Final = 45
OPAQUE_LENGTH_SIZE: Final = 2
SIGNATURE_SIZE: Final = 96  # raw ECDSA P-384 r || s, big-endian
# Fixed bytes around the two variable parts: 45 + 32 (responder nonce) + 2 + 96.
FIXED_SIZE: Final = RSP_RECORD + NONCE_SIZE + OPAQUE_LENGTH_SIZE + SIGNATURE_SIZE

# Measurement block (DSP0274 table 45) and DMTF measurement value (table 46).
BLOCK_HEADER_SIZE: Final = 4  # index, specification, u16 size
DMTF_HEADER_SIZE: Final = 3  # type, u16 value size
MEASUREMENT_SPEC_DMTF: Final = 0x01
MAX_BLOCK_INDEX: Final = 0xEF  # 0xF0..0xFF are reserved / manifest indices
MAX_RECORD_LENGTH: Final = 0xFFFFFF

# GSP (confidential computing) reports: 64 blocks of a SHA-384 digest each.
GSP_BLOCKS: Final = 64
DMTF_TYPE_FIRMWARE_DIGEST: Final = 0x01  # mutable firmware, digest
DIGEST_SIZE: Final = 48

# Opaque data. Legacy: repeated [u16 type][u16 length][value]. Versioned: "NVDAOD" header,
# then [u16 type][u16 value type][u16 length][value].
NVDAOD_MAGIC: Final = b"NVDAOD"
NVDAOD_HEADER_SIZE: Final = 12  # magic, u16 profile, major, minor, patch, pad
NVDAOD_MAX_MAJOR: Final = 2
LEGACY_FIELD_HEADER: Final = 4
NVDAOD_FIELD_HEADER: Final = 6

# Opaque data types (NVIDIA's OpaqueDataType numbering).
OPAQUE_DRIVER_VERSION: Final = 3
OPAQUE_GPU_INFO: Final = 4
OPAQUE_VBIOS_VERSION: Final = 6
OPAQUE_NVDEC0_STATUS: Final = 11
OPAQUE_MSRSCNT: Final = 12
OPAQUE_CPRINFO: Final = 13
OPAQUE_BOARD_ID: Final = 14
OPAQUE_CHIP_SKU: Final = 15
OPAQUE_CHIP_SKU_MOD: Final = 16
OPAQUE_PROJECT: Final = 17
OPAQUE_PROJECT_SKU: Final = 18
OPAQUE_PROJECT_SKU_MOD: Final = 19
OPAQUE_FWID: Final = 20
OPAQUE_PROTECTED_PCIE_STATUS: Final = 21
OPAQUE_SWITCH_PDI: Final = 22
OPAQUE_SYS_ENABLE_STATUS: Final = 33
OPAQUE_DATA_VERSION: Final = 34
OPAQUE_CHIP_INFO: Final = 35
OPAQUE_FEATURE_FLAG: Final = 36
OPAQUE_FSP_UCODE_SVN: Final = 37

VBIOS_VERSION_SIZE: Final = 8
GPU_INFO_HOPPER: Final = 0x0180
GPU_INFO_BLACKWELL: Final = 0x01A0
NVDEC0_DISABLED: Final = 0x55
