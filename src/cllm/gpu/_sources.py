"""Where RIMs come from: files given explicitly, a local directory bundle (air-gapped), or
NVIDIA's RIM service. None is trusted: whatever a source returns is verified by the pipeline
(signature, chain to the pinned RIM root, version). cllm ships no RIMs.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import httpx

from cllm.errors import CllmError, GpuEvidenceFormatError
from cllm.gpu._rim import MAX_RIM_SIZE, RimKind, _load, rim_kind_and_version

__all__ = [
    "NVIDIA_RIM_SERVICE_URL",
    "RIM_API_KEY_ENV",
    "RimDirectory",
    "RimFiles",
    "RimService",
    "RimSource",
    "RimSources",
]

_log = logging.getLogger(__name__)

NVIDIA_RIM_SERVICE_URL: Final = "https://rim.attestation.nvidia.com"
RIM_API_KEY_ENV: Final = "CLLM_GPU_RIM_API_KEY"
_RIM_ID: Final = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


class RimSource(Protocol):
    def find(self, rim_id: str, kind: RimKind, version: str) -> bytes | None:
        """The RIM document for ``rim_id`` (a ``kind`` RIM of ``version``), or None."""
        ...


def _meta_version(data: bytes) -> str | None:
    try:
        root = _load(data)
    except GpuEvidenceFormatError:
        return None
    meta = root.find("{http://standards.iso.org/iso/19770/-2/2015/schema.xsd}Meta")
    return None if meta is None else meta.get("colloquialVersion")


class RimFiles:
    """RIM documents given explicitly (``--rim``): chosen by kind, preferring the version asked
    for. A RIM of the right kind but another version is returned, for the pipeline to refuse
    with ``gpu_rim_version_mismatch`` rather than report it missing. Documents are indexed once
    (kind and version only; the pipeline verifies whichever is chosen)."""

    def __init__(self, documents: Sequence[bytes]) -> None:
        self.documents = tuple(documents)
        index: list[tuple[RimKind, str, bytes]] = []
        for data in self.documents:
            version = _meta_version(data)
            if version is None:
                continue
            try:
                index.append((rim_kind_and_version(version), version.lower(), data))
            except GpuEvidenceFormatError:
                continue
        self._index = tuple(index)

    def find(self, rim_id: str, kind: RimKind, version: str) -> bytes | None:
        fallback = None
        for found_kind, found_version, data in self._index:
            if found_kind is not kind:
                continue
            if found_version == version.lower():
                return data
            fallback = fallback or data
        return fallback


@dataclass(frozen=True)
class RimDirectory:
    """An air-gapped bundle: ``<dir>/<RIM id>`` with an optional ``.xml`` or ``.swidtag``."""

    path: Path

    def find(self, rim_id: str, kind: RimKind, version: str) -> bytes | None:
        if not _RIM_ID.fullmatch(rim_id):
            return None
        for name in (rim_id, f"{rim_id}.xml", f"{rim_id}.swidtag"):
            candidate = self.path / name
            try:
                if candidate.stat().st_size > MAX_RIM_SIZE:
                    raise CllmError(
                        f"{candidate} is too large for a RIM", code="gpu_rim_unreadable"
                    )
                return candidate.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise CllmError(
                    f"cannot read RIM {candidate}: {exc.strerror}", code="gpu_rim_unreadable"
                ) from exc
        return None


@dataclass
class RimService:
    """NVIDIA's RIM service: ``GET {url}/v1/rim/{id}`` → ``{"id", "rim": base64(XML)}``.

    The API key, when set, comes from the environment (``CLLM_GPU_RIM_API_KEY``) and is sent as
    a bearer token. Answers are cached by id for ``cache_seconds``; failures are not cached.
    """

    client: httpx.Client
    url: str = NVIDIA_RIM_SERVICE_URL
    timeout: float = 10.0
    cache_seconds: float = 24 * 3600
    clock: Callable[[], float] = time.monotonic
    api_key: str | None = field(default_factory=lambda: os.environ.get(RIM_API_KEY_ENV) or None)
    _cache: dict[str, tuple[bytes, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def find(self, rim_id: str, kind: RimKind, version: str) -> bytes | None:
        if not _RIM_ID.fullmatch(rim_id):
            return None
        now = self.clock()
        with self._lock:
            cached = self._cache.get(rim_id)
        if cached is not None and now < cached[1]:
            return cached[0]
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            reply = self.client.get(
                f"{self.url.rstrip('/')}/v1/rim/{rim_id}", headers=headers, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            raise CllmError(
                f"RIM service {self.url} unreachable: {exc}", code="gpu_rim_fetch"
            ) from exc
        if reply.status_code == 404:
            return None
        if reply.status_code != 200 or len(reply.content) > 2 * MAX_RIM_SIZE:
            raise CllmError(
                f"RIM service {self.url} answered {reply.status_code} for {rim_id}",
                code="gpu_rim_fetch",
            )
        try:
            doc = reply.json()
            data = base64.b64decode(doc["rim"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise CllmError(
                f"RIM service answer for {rim_id} is malformed", code="gpu_rim_fetch"
            ) from exc
        with self._lock:
            self._cache[rim_id] = (data, now + self.cache_seconds)
        _log.info("fetched RIM %s from %s", rim_id, self.url)
        return data


@dataclass(frozen=True)
class RimSources:
    """The first source that has the RIM wins."""

    sources: Sequence[RimSource]

    def find(self, rim_id: str, kind: RimKind, version: str) -> bytes | None:
        for source in self.sources:
            found = source.find(rim_id, kind, version)
            if found is not None:
                return found
        return None
