"""The user's trust configuration: per server URL, how that server is to be verified (which
verifier and its pinned key, or the local verifier with a policy or a release manifest), kept on
the user's machine and never taken from the server.

``$XDG_CONFIG_HOME/cllm/trust.toml`` (``~/.config/cllm/trust.toml``)::

    [servers."https://llm.example.com"]
    verifier = "https://verifier.example.org"
    verifier_key = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"   # RFC 7638 thumbprint

    [servers."http://127.0.0.1:8080"]
    policy = "/home/me/policies/strict.toml"                         # local verification
    trust_simulated_root = "/home/me/sim/root-ca.pem"

``cllm trust add`` / ``cllm trust show`` write and print it; ``cllm verify``, ``cllm chat`` and
``cllm proxy`` read it, their flags overriding it; the SDK reads it with ``TrustConfig.load()``
and ``trusted_verifier``. ``release`` and ``publisher_key`` (a signed release manifest and its
publisher's key, in place of a policy) are checked by the local verifier (``--release``).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import pydantic

from cllm.client._pin import check_verifier_url, parse_verifier_key
from cllm.client._verify import LocalVerifier, RemoteVerifier, Verifier
from cllm.errors import CllmError
from cllm.policy import parse_policy

__all__ = [
    "TRUST_FILE",
    "TrustConfig",
    "TrustEntry",
    "default_trust_path",
    "normalise_server_url",
    "trusted_verifier",
]

TRUST_FILE: Final = Path("cllm") / "trust.toml"
_MAX_FILE: Final = 1024 * 1024


def default_trust_path(
    *, environ: Mapping[str, str] | None = None, home: Path | None = None
) -> Path:
    """``$XDG_CONFIG_HOME/cllm/trust.toml``, else ``~/.config/cllm/trust.toml`` (XDG Base
    Directory: a relative ``XDG_CONFIG_HOME`` is ignored)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME", "")
    if not base or not Path(base).is_absolute():
        base = str((home or Path.home()) / ".config")
    return Path(base) / TRUST_FILE


def normalise_server_url(url: str) -> str:
    """The key a server is filed under: scheme and host lowercased, no trailing slash."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise CllmError(f"not a URL: {url!r}", code="config_invalid") from exc
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CllmError(f"not an http(s) server URL: {url!r}", code="config_invalid")
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, "", ""))


class _EntryModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True, frozen=True)

    verifier: str | None = None
    verifier_key: str | None = None
    policy: str | None = None
    policy_id: str | None = None
    trust_simulated_root: str | None = None
    trust_simulated_gpu_root: str | None = None
    collateral_dir: str | None = None
    pccs_url: str | None = None
    strict: bool | None = None
    release: str | None = None
    publisher_key: str | None = None


class _FileModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True)

    servers: dict[str, _EntryModel] = {}


@dataclass(frozen=True, slots=True)
class TrustEntry:
    """How one server is verified. ``verifier`` None means the local verifier."""

    url: str
    verifier: str | None = None
    verifier_key: str | None = None  # thumbprint of the verifier's token key
    policy: str | None = None  # local: policy file
    policy_id: str | None = None  # verifier service: its policy id
    trust_simulated_root: str | None = None
    trust_simulated_gpu_root: str | None = None
    collateral_dir: str | None = None
    pccs_url: str | None = None
    strict: bool | None = None
    release: str | None = None  # signed release manifest (cllm verify --release)
    publisher_key: str | None = None  # the manifest publisher's public key

    def __post_init__(self) -> None:
        local_only = [
            name
            for name in (
                "policy",
                "trust_simulated_root",
                "trust_simulated_gpu_root",
                "collateral_dir",
                "pccs_url",
                "release",
                "publisher_key",
            )
            if getattr(self, name) is not None
        ]
        if self.verifier is not None:
            check_verifier_url(self.verifier)
            if local_only:
                raise CllmError(
                    f"{self.url}: {', '.join(local_only)} are for the local verifier; a "
                    "verifier service uses its own (choose its policy with policy_id)",
                    code="config_invalid",
                )
        elif self.verifier_key is not None or self.policy_id is not None:
            raise CllmError(
                f"{self.url}: verifier_key and policy_id need a verifier", code="config_invalid"
            )
        if (self.release is None) != (self.publisher_key is None):
            raise CllmError(
                f"{self.url}: release and publisher_key go together", code="config_invalid"
            )
        if self.release is not None and self.policy is not None:
            raise CllmError(
                f"{self.url}: choose a policy or a release manifest", code="config_invalid"
            )

    def settings(self) -> dict[str, Any]:
        """The fields that are set, by name (the flags' destinations)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "url" and getattr(self, f.name) is not None
        }


def _toml_string(text: str) -> str:
    # A JSON string with non-ASCII kept is a valid TOML basic string (same escapes).
    return json.dumps(text, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class TrustConfig:
    path: Path
    entries: Mapping[str, TrustEntry]

    @classmethod
    def load(cls, path: Path | None = None) -> TrustConfig:
        """The configuration at ``path`` (default: ``default_trust_path()``); empty when the
        file does not exist; ``config_invalid`` when it cannot be read or is not valid."""
        path = path or default_trust_path()
        try:
            with path.open("rb") as handle:
                raw = handle.read(_MAX_FILE + 1)
        except FileNotFoundError:
            return cls(path, {})
        except OSError as exc:
            raise CllmError(f"cannot read {path}: {exc.strerror}", code="config_invalid") from exc
        if len(raw) > _MAX_FILE:
            raise CllmError(f"{path} is larger than 1 MiB", code="config_invalid")
        try:
            model = _FileModel.model_validate(tomllib.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise CllmError(f"{path} is not TOML: {exc}", code="config_invalid") from exc
        except pydantic.ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise CllmError(f"{path}: {where}: {first['msg']}", code="config_invalid") from exc
        entries: dict[str, TrustEntry] = {}
        for url, entry in model.servers.items():
            key = normalise_server_url(url)
            entries[key] = TrustEntry(url=key, **entry.model_dump(exclude_none=True))
        return cls(path, entries)

    def for_url(self, url: str) -> TrustEntry | None:
        return self.entries.get(normalise_server_url(url))

    def with_entry(self, entry: TrustEntry) -> TrustConfig:
        return replace(self, entries={**self.entries, entry.url: entry})

    def dumps(self) -> str:
        lines = [
            "# cllm trust configuration: how each server is verified. Written by `cllm trust",
            "# add`; read by cllm verify, cllm chat, cllm proxy and the SDK (flags override).",
        ]
        for url in sorted(self.entries):
            lines += ["", f"[servers.{_toml_string(url)}]"]
            for name, value in self.entries[url].settings().items():
                text = ("true" if value else "false") if isinstance(value, bool) else None
                lines.append(f"{name} = {text or _toml_string(str(value))}")
        return "\n".join(lines) + "\n"

    def save(self) -> None:
        """Write the file (0600, its directory 0700), replacing it atomically."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(self.dumps())
        os.replace(temporary, self.path)


def trusted_verifier(url: str, *, config: TrustConfig | None = None) -> Verifier:
    """The ``Verifier`` the user's configuration names for the server at ``url`` (the local
    verifier with the default policy when it names none; with its signed release manifest and
    publisher key when it names one)."""
    entry = (config or TrustConfig.load()).for_url(url) or TrustEntry(url=url)
    if entry.verifier is not None:
        pin = parse_verifier_key(entry.verifier_key) if entry.verifier_key else None
        return RemoteVerifier(entry.verifier, policy_id=entry.policy_id or "default", key_pin=pin)
    policy = None
    if entry.policy is not None:
        try:
            text = Path(entry.policy).read_bytes()
        except OSError as exc:
            raise CllmError(
                f"cannot read policy {entry.policy}: {exc.strerror}", code="file_unreadable"
            ) from exc
        policy = parse_policy(text, policy_id=Path(entry.policy).stem)
    return LocalVerifier(
        policy=policy,
        trust_simulated_root=Path(entry.trust_simulated_root)
        if entry.trust_simulated_root
        else None,
        collateral_dir=Path(entry.collateral_dir) if entry.collateral_dir else None,
        pccs_url=entry.pccs_url,
        trust_simulated_gpu_root=(
            Path(entry.trust_simulated_gpu_root) if entry.trust_simulated_gpu_root else None
        ),
        release=entry.release,
        publisher_key=entry.publisher_key,
    )
