"""Signed release manifests: the reference values a publisher vouches for (docs/release.md).

A manifest lists the component events ``cllm measure`` reproduces for one release of the
software (and, optionally, the boot chain: MRTD and RTMR0-2), with a name, a version, a time
and the publisher's Ed25519 signature. A policy that names a manifest (``[release]``) pins the
software to it; a verifier checks the signature against the publisher key the *user* chose.
"""

from cllm.release._manifest import (
    BOOT_REGISTERS,
    PublisherKey,
    Release,
    create_release,
    generate_publisher_key,
    load_private_key,
    load_publisher_key,
    load_release,
    parse_release,
)

__all__ = [
    "BOOT_REGISTERS",
    "PublisherKey",
    "Release",
    "create_release",
    "generate_publisher_key",
    "load_private_key",
    "load_publisher_key",
    "load_release",
    "parse_release",
]
