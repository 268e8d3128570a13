"""Release manifests: the encoder and the parser agree; anything not signed by the trusted
publisher key, or not well-formed, is refused with its exact code; the CLI exits 0/1/2."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from cllm.cli import main
from cllm.errors import ReleaseError
from cllm.measure import Event, start_marker
from cllm.release import (
    PublisherKey,
    create_release,
    generate_publisher_key,
    load_private_key,
    parse_release,
)
from cllm.release._manifest import MAX_MANIFEST_BYTES

CREATED = 1_790_000_000
MRTD = "ab" * 48
EVENTS = (
    Event(rtmr=3, type="cllm.package", name="confidential-llm", digest=b"\x01" * 48),
    Event(rtmr=3, type="cllm.model", name="m.gguf", digest=b"\x02" * 48),
)


def _keys() -> tuple[bytes, PublisherKey]:
    private, public = generate_publisher_key()
    return private, PublisherKey.from_pem(public)


def _manifest(private: bytes, **overrides: Any) -> bytes:
    args: dict[str, Any] = {
        "name": "cllm",
        "version": "1.2.3",
        "created": CREATED,
        "components": EVENTS,
        "boot": {"mrtd": MRTD},
        "key": load_private_key(private),
    }
    return create_release(**{**args, **overrides})


def _resign(doc: dict[str, Any], private: bytes) -> bytes:
    """A document re-signed as the publisher would sign it (to test shape checks)."""
    import rfc8785

    from cllm.release._manifest import SIGNING_CONTEXT

    body = {key: value for key, value in doc.items() if key != "signature"}
    signature = load_private_key(private).sign(SIGNING_CONTEXT + rfc8785.dumps(body))
    return json.dumps({**body, "signature": base64.b64encode(signature).decode()}).encode()


def test_round_trip() -> None:
    private, public = _keys()
    raw = _manifest(private, components=(start_marker(0), *EVENTS))
    release = parse_release(raw, publisher_key=public)
    assert (release.name, release.version, release.created) == ("cllm", "1.2.3", CREATED)
    assert release.components == EVENTS  # the start marker is not a component
    assert dict(release.boot) == {"mrtd": MRTD}
    assert release.publisher.sha256 == public.sha256
    summary = release.summary()
    assert summary["publisher_key_sha256"] == public.sha256
    assert summary["components"] == ["cllm.model", "cllm.package"]
    # Layout does not matter, only the signed content: a re-indented file still verifies.
    compact = json.dumps(json.loads(raw), separators=(",", ":")).encode()
    assert parse_release(compact, publisher_key=public).components == EVENTS


def test_another_publishers_key_is_refused() -> None:
    private, _ = _keys()
    _, stranger = _keys()
    with pytest.raises(ReleaseError) as raised:
        parse_release(_manifest(private), publisher_key=stranger)
    assert raised.value.code == "release_wrong_publisher"


def test_a_manifest_that_names_the_trusted_key_but_was_signed_by_another() -> None:
    _, public = _keys()
    attacker, _ = _keys()
    doc = json.loads(_manifest(attacker))
    doc["publisher"]["key_sha256"] = public.sha256  # claims to be the trusted publisher
    with pytest.raises(ReleaseError) as raised:
        parse_release(_resign(doc, attacker), publisher_key=public)
    assert raised.value.code == "release_bad_signature"


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(version="1.2.4"),
        lambda d: d["components"][1]["digest"].update(sha384="03" * 48),
        lambda d: d["components"].pop(),
        lambda d: d["boot"].update(mrtd="cd" * 48),
        lambda d: d["boot"].pop("mrtd"),
        lambda d: d.update(created=CREATED + 1),
    ],
)
def test_any_edit_breaks_the_signature(edit: Any) -> None:
    private, public = _keys()
    doc = json.loads(_manifest(private))
    edit(doc)
    with pytest.raises(ReleaseError) as raised:
        parse_release(json.dumps(doc).encode(), publisher_key=public)
    assert raised.value.code == "release_bad_signature"


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d.update(format="cllm.release.v2"), "format"),
        (lambda d: d.update(extra=1), "unknown"),
        (lambda d: d.pop("created"), "missing"),
        (lambda d: d.update(created=True), "created"),
        (lambda d: d.update(name=""), "name"),
        (lambda d: d.update(name="a\nb"), "name"),
        (lambda d: d["boot"].update(rtmr3="00" * 48), "unknown register"),
        (lambda d: d["boot"].update(mrtd="AB" * 48), "lower-case hex"),
        (lambda d: d.update(components={}), "components"),
        (lambda d: d["components"][0].update(rtmr=2), "components"),
        (lambda d: d["components"].append(start_marker(0).to_json()), "start marker"),
        (lambda d: d.update(components=[], boot={}), "must pin"),
        (lambda d: d["publisher"].update(algorithm="ES256"), "publisher"),
        (lambda d: d.update(signature="!!"), "base64"),
        (lambda d: d.update(signature=base64.b64encode(b"x" * 63).decode()), "64 bytes"),
    ],
)
def test_malformed_manifests_are_typed_errors(edit: Any, fragment: str) -> None:
    private, public = _keys()
    doc = json.loads(_manifest(private))
    edit(doc)
    # Signed as the publisher would, unless the edit is the signature itself.
    signature_edit = fragment in ("base64", "64 bytes")
    raw = json.dumps(doc).encode() if signature_edit else _resign(doc, private)
    with pytest.raises(ReleaseError) as raised:
        parse_release(raw, publisher_key=public)
    assert raised.value.code == "release_malformed"
    assert fragment in raised.value.message


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"a": 1, "a": 2}',
        b"[" * 100_000,
        b" " * (MAX_MANIFEST_BYTES + 1),
    ],
    ids=["empty", "not-utf8", "array", "duplicate-key", "deep", "too-large"],
)
def test_garbage_is_malformed_never_a_crash(raw: bytes) -> None:
    _, public = _keys()
    with pytest.raises(ReleaseError) as raised:
        parse_release(raw, publisher_key=public)
    assert raised.value.code == "release_malformed"


def test_keys_must_be_ed25519() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p256 = ec.generate_private_key(ec.SECP256R1())
    pem = p256.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for bad in (pem, b"not a key", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"):
        with pytest.raises(ReleaseError) as raised:
            PublisherKey.from_pem(bad)
        assert raised.value.code == "release_key_invalid"
    private = p256.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ReleaseError) as raised:
        load_private_key(private)
    assert raised.value.code == "release_key_invalid"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_cli_keygen_create_verify_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, other = tmp_path / "publisher.pem", tmp_path / "other.pem"
    assert main(["release", "keygen", "--out", str(key)]) == 0
    assert main(["release", "keygen", "--out", str(other)]) == 0
    assert main(["release", "keygen", "--out", str(key)]) == 2  # never overwrites a key
    capsys.readouterr()
    assert key.stat().st_mode & 0o077 == 0
    manifest = tmp_path / "release.json"
    code, doc = _cli(
        capsys,
        "release",
        "create",
        "--out",
        str(manifest),
        "--key",
        str(key),
        "--name",
        "test",
        "--version",
        "9",
        "--boot-only",
        "--mrtd",
        MRTD.upper(),
        "--rtmr0",
        "01" * 48,
    )
    assert (code, doc["boot"]) == (0, ["mrtd", "rtmr0"])
    code, doc = _cli(capsys, "release", "verify", str(manifest), "--publisher-key", f"{key}.pub")
    assert code == 0
    assert doc["valid"] is True
    assert doc["pins"]["boot"] == {"mrtd": MRTD, "rtmr0": "01" * 48}
    code, doc = _cli(capsys, "release", "verify", str(manifest), "--publisher-key", f"{other}.pub")
    assert (code, doc["error"]["code"]) == (1, "release_wrong_publisher")
    tampered = json.loads(manifest.read_bytes())
    tampered["boot"]["mrtd"] = "00" * 48
    manifest.write_text(json.dumps(tampered))
    code, doc = _cli(capsys, "release", "verify", str(manifest), "--publisher-key", f"{key}.pub")
    assert (code, doc["error"]["code"]) == (1, "release_bad_signature")
    manifest.write_text("{")
    code, doc = _cli(capsys, "release", "verify", str(manifest), "--publisher-key", f"{key}.pub")
    assert (code, doc["error"]["code"]) == (2, "release_malformed")
    code, doc = _cli(capsys, "release", "verify", str(manifest), "--publisher-key", str(manifest))
    assert (code, doc["error"]["code"]) == (2, "release_key_invalid")
    code, doc = _cli(
        capsys, "release", "verify", str(tmp_path / "absent"), "--publisher-key", f"{key}.pub"
    )
    assert (code, doc["error"]["code"]) == (2, "file_unreadable")
