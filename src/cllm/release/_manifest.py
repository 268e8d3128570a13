"""The release manifest: encoder (``create_release``) beside parser (``parse_release``).

File format (JSON object, UTF-8, at most ``MAX_MANIFEST_BYTES``; every key required, no other)::

    {"format": "cllm.release.v1",
     "name": "...", "version": "...", "created": <unix seconds>,
     "boot": {"mrtd": "<96 hex>", "rtmr0": ..., "rtmr1": ..., "rtmr2": ...},  # any subset
     "components": [<cllm event>, ...],        # exactly what `cllm measure --json` prints
     "publisher": {"algorithm": "Ed25519", "key_sha256": "<SHA-256 of the key's SPKI DER>"},
     "signature": "<base64 of the 64-byte Ed25519 signature>"}

The signature covers ``SIGNING_CONTEXT || JCS(manifest without "signature")`` (RFC 8785), so
whitespace and key order of the file do not matter and nothing outside the signature is read as
meaning. The publisher key is never taken from the manifest: the caller supplies the key it
trusts, and ``publisher.key_sha256`` only makes a wrong key a clear error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cllm.errors import EventLogError, ReleaseError
from cllm.measure import Event

__all__ = [
    "BOOT_REGISTERS",
    "MANIFEST_FORMAT",
    "MAX_MANIFEST_BYTES",
    "PublisherKey",
    "Release",
    "create_release",
    "generate_publisher_key",
    "load_private_key",
    "load_publisher_key",
    "load_release",
    "parse_release",
]

MANIFEST_FORMAT: Final = "cllm.release.v1"
SIGNING_CONTEXT: Final = b"cllm release manifest v1\x00"
MAX_MANIFEST_BYTES: Final = 1024 * 1024
MAX_COMPONENTS: Final = 256
BOOT_REGISTERS: Final = ("mrtd", "rtmr0", "rtmr1", "rtmr2")
START_EVENT_TYPE: Final = "cllm.start"  # a start marker, not a component: never pinned
_KEYS: Final = frozenset(
    {"format", "name", "version", "created", "boot", "components", "publisher", "signature"}
)
_HEX48: Final = re.compile(r"[0-9a-f]{96}")
_HEX32: Final = re.compile(r"[0-9a-f]{64}")
_TEXT: Final = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_MAX_KEY_PEM: Final = 16 * 1024


def _malformed(message: str) -> NoReturn:
    raise ReleaseError(message, code="release_malformed")


def _key_invalid(message: str) -> NoReturn:
    raise ReleaseError(message, code="release_key_invalid")


@dataclass(frozen=True, slots=True)
class PublisherKey:
    """An Ed25519 public key a user trusts to sign releases; ``sha256`` names it (SHA-256 of
    its SubjectPublicKeyInfo DER, hex), as manifests and tokens do."""

    key: Ed25519PublicKey = field(repr=False, compare=False)
    sha256: str

    @classmethod
    def from_public_key(cls, key: Ed25519PublicKey) -> PublisherKey:
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(key, hashlib.sha256(der).hexdigest())

    @classmethod
    def from_pem(cls, pem: bytes) -> PublisherKey:
        if len(pem) > _MAX_KEY_PEM:
            _key_invalid("the publisher key file is too large to be a PEM public key")
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise ReleaseError(
                "the publisher key is not a PEM public key", code="release_key_invalid"
            ) from exc
        if not isinstance(key, Ed25519PublicKey):
            _key_invalid("the publisher key must be an Ed25519 public key")
        return cls.from_public_key(key)

    def pem(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass(frozen=True, slots=True)
class Release:
    """A manifest whose signature verified under ``publisher``."""

    name: str
    version: str
    created: int
    boot: Mapping[str, str]  # register name -> 96 hex, any subset of BOOT_REGISTERS
    components: tuple[Event, ...]
    publisher: PublisherKey
    sha256: str  # of the manifest file's bytes

    def summary(self) -> dict[str, Any]:
        """What tokens and reports say about the release (``reference.release``)."""
        return {
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "publisher_key_sha256": self.publisher.sha256,
            "manifest_sha256": self.sha256,
            "boot": sorted(self.boot),
            "components": sorted({event.type for event in self.components}),
        }


def generate_publisher_key() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key pair: (PKCS#8 PEM private key, SPKI PEM public key)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private, PublisherKey.from_public_key(key.public_key()).pem()


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    if len(pem) > _MAX_KEY_PEM:
        _key_invalid("the signing key file is too large to be a PEM private key")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ReleaseError(
            "the signing key is not an unencrypted PEM private key", code="release_key_invalid"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        _key_invalid("the signing key must be an Ed25519 private key")
    return key


def load_publisher_key(path: Path) -> PublisherKey:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ReleaseError(
            f"cannot read publisher key {path}: {exc.strerror}", code="release_key_invalid"
        ) from exc
    return PublisherKey.from_pem(pem)


def _unsigned_body(
    *,
    name: str,
    version: str,
    created: int,
    boot: Mapping[str, str],
    components: Sequence[Event],
    publisher: PublisherKey,
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "version": version,
        "created": created,
        "boot": dict(boot),
        "components": [event.to_json() for event in components],
        "publisher": {"algorithm": "Ed25519", "key_sha256": publisher.sha256},
    }


def _signed_bytes(body: Mapping[str, Any]) -> bytes:
    return SIGNING_CONTEXT + rfc8785.dumps(dict(body))


def create_release(
    *,
    name: str,
    version: str,
    created: int,
    components: Sequence[Event],
    boot: Mapping[str, str],
    key: Ed25519PrivateKey,
) -> bytes:
    """The signed manifest file's bytes. ``components`` are the startup events (start markers
    are left out: they are not components); ``boot`` any subset of MRTD and RTMR0-2."""
    _check_text(name, "name")
    _check_text(version, "version")
    if isinstance(created, bool) or not isinstance(created, int) or created < 0:
        raise ValueError("created must be non-negative Unix seconds")
    checked_boot = _check_boot(boot)
    kept = tuple(event for event in components if event.type != START_EVENT_TYPE)
    if not kept and not checked_boot:
        _malformed("a release must pin components or boot registers")
    if len(kept) > MAX_COMPONENTS:
        _malformed(f"more than {MAX_COMPONENTS} components")
    publisher = PublisherKey.from_public_key(key.public_key())
    body = _unsigned_body(
        name=name,
        version=version,
        created=created,
        boot=checked_boot,
        components=kept,
        publisher=publisher,
    )
    signature = key.sign(_signed_bytes(body))
    document = {**body, "signature": base64.b64encode(signature).decode("ascii")}
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not _TEXT.fullmatch(value):
        _malformed(f"{what} must be 1-128 characters without control characters")
    return value


def _check_boot(boot: object) -> dict[str, str]:
    if not isinstance(boot, Mapping):
        _malformed("boot must be an object")
    checked: dict[str, str] = {}
    for register, value in boot.items():
        if register not in BOOT_REGISTERS:
            _malformed(f"boot: unknown register {str(register)[:20]!r}")
        if not isinstance(value, str) or not _HEX48.fullmatch(value):
            _malformed(f"boot.{register} must be 48 bytes of lower-case hex")
        checked[register] = value
    return checked


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            _malformed(f"duplicate key {key[:40]!r}")
        result[key] = value
    return result


def _decode(raw: bytes) -> tuple[dict[str, Any], tuple[Event, ...], bytes]:
    """Shape checks only: the body that was signed, its events, and the signature."""
    if len(raw) > MAX_MANIFEST_BYTES:
        _malformed(f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ReleaseError("the manifest is not JSON text", code="release_malformed") from exc
    if not isinstance(doc, dict):
        _malformed("the manifest must be a JSON object")
    if set(doc) != _KEYS:
        missing, extra = sorted(_KEYS - set(doc)), sorted(set(doc) - _KEYS)
        _malformed(f"manifest keys: missing {missing}, unknown {[k[:40] for k in extra]}")
    if doc["format"] != MANIFEST_FORMAT:
        _malformed(f"format must be {MANIFEST_FORMAT!r}")
    _check_text(doc["name"], "name")
    _check_text(doc["version"], "version")
    created = doc["created"]
    if isinstance(created, bool) or not isinstance(created, int) or not 0 <= created < 2**53:
        _malformed("created must be Unix seconds")
    _check_boot(doc["boot"])
    items = doc["components"]
    if not isinstance(items, list) or len(items) > MAX_COMPONENTS:
        _malformed(f"components must be a list of at most {MAX_COMPONENTS} events")
    try:
        events = tuple(Event.from_json(item) for item in items)
    except EventLogError as exc:
        raise ReleaseError(f"components: {exc.message}", code="release_malformed") from exc
    if any(event.type == START_EVENT_TYPE for event in events):
        _malformed("a start marker is not a component")
    if any(event.rtmr != 3 or not event.type.startswith("cllm.") for event in events):
        _malformed("components are cllm events of RTMR3")
    if not events and not doc["boot"]:
        _malformed("a release must pin components or boot registers")
    publisher = doc["publisher"]
    if (
        not isinstance(publisher, dict)
        or set(publisher) != {"algorithm", "key_sha256"}
        or publisher["algorithm"] != "Ed25519"
        or not isinstance(publisher["key_sha256"], str)
        or not _HEX32.fullmatch(publisher["key_sha256"])
    ):
        _malformed('publisher must be {"algorithm": "Ed25519", "key_sha256": "<64 hex>"}')
    encoded = doc["signature"]
    if not isinstance(encoded, str) or len(encoded) > 128:
        _malformed("signature must be base64")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ReleaseError("signature must be base64", code="release_malformed") from exc
    if len(signature) != 64:
        _malformed("an Ed25519 signature is 64 bytes")
    body = {key: value for key, value in doc.items() if key != "signature"}
    return body, events, signature


def parse_release(raw: bytes, *, publisher_key: PublisherKey) -> Release:
    """Decode a manifest and verify its signature under ``publisher_key`` (the key the caller
    trusts). Errors: ``release_malformed``, ``release_wrong_publisher`` (signed, or said to be
    signed, by another key), ``release_bad_signature``."""
    body, events, signature = _decode(raw)
    if body["publisher"]["key_sha256"] != publisher_key.sha256:
        raise ReleaseError(
            f"the manifest names publisher key sha256:{body['publisher']['key_sha256'][:16]}..., "
            f"not the trusted key sha256:{publisher_key.sha256[:16]}...",
            code="release_wrong_publisher",
        )
    try:
        publisher_key.key.verify(signature, _signed_bytes(body))
    except InvalidSignature as exc:
        raise ReleaseError(
            "the manifest's signature does not verify under the publisher key",
            code="release_bad_signature",
        ) from exc
    return Release(
        name=body["name"],
        version=body["version"],
        created=body["created"],
        boot=dict(body["boot"]),
        components=events,
        publisher=publisher_key,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def load_release(manifest: Path, *, publisher_key: Path | PublisherKey) -> Release:
    """``parse_release`` of a file, with the publisher key as a PEM file or a key."""
    key = (
        publisher_key
        if isinstance(publisher_key, PublisherKey)
        else load_publisher_key(publisher_key)
    )
    try:
        with manifest.open("rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ReleaseError(
            f"cannot read release manifest {manifest}: {exc.strerror}", code="release_unreadable"
        ) from exc
    return parse_release(raw, publisher_key=key)
