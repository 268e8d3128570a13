"""Component measurement of an Ollama model (``cllm.ollama_model``): manifest, config and
layers, every blob re-hashed and checked."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rfc8785

from cllm.errors import MeasurementError
from cllm.measure._event import Event
from cllm.measure._hashing import (
    FileDigests,
    HashRequest,
    ProgressCallback,
)
from cllm.measure._plan import (
    _CONTROL,
    PathArg,
    _event,
    _fail,
    _Plan,
    _run,
)

__all__ = ["OllamaModel", "measure_ollama_model"]

_MAX_MANIFEST = 1024 * 1024
_MAX_LAYERS = 1024


# --- Ollama model ------------------------------------------------------------------------------

_OLLAMA_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,79}")
_OLLAMA_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_OLLAMA_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class OllamaModel:
    """An Ollama model on disk: ``<root>/manifests/<registry>/<namespace>/<name>/<tag>``, its
    blobs at ``<root>/blobs/sha256-<hex>``. ``root`` is Ollama's models directory
    (``$OLLAMA_MODELS``, ``~/.ollama/models``, or ``/usr/share/ollama/.ollama/models``)."""

    root: Path
    name: str
    tag: str = "latest"
    namespace: str = "library"
    registry: str = "registry.ollama.ai"

    def __post_init__(self) -> None:
        # These become path components: anything but plain names could leave the models dir.
        for part in (self.name, self.namespace, self.registry):
            if not _OLLAMA_PART.fullmatch(part) or part.strip(".") == "":
                _fail(f"invalid Ollama model name part {part!r}", "ollama_name_invalid")
        if not _OLLAMA_TAG.fullmatch(self.tag) or self.tag.strip(".") == "":
            _fail(f"invalid Ollama tag {self.tag!r}", "ollama_name_invalid")

    @classmethod
    def parse(cls, reference: str, *, root: PathArg) -> OllamaModel:
        """``name``, ``name:tag``, ``namespace/name:tag`` or ``registry/namespace/name:tag``."""
        path, tag = reference, "latest"
        if ":" in reference.rsplit("/", 1)[-1]:
            path, tag = reference.rsplit(":", 1)
        parts = path.split("/")
        if len(parts) == 1:
            return cls(Path(root), parts[0], tag)
        if len(parts) == 2:
            return cls(Path(root), parts[1], tag, namespace=parts[0])
        if len(parts) == 3:
            return cls(Path(root), parts[2], tag, namespace=parts[1], registry=parts[0])
        _fail(f"invalid Ollama model reference {reference!r}", "ollama_name_invalid")

    @property
    def reference(self) -> str:
        """The model as Ollama names it, without the default registry and namespace."""
        if self.registry != "registry.ollama.ai":
            return f"{self.registry}/{self.namespace}/{self.name}"
        if self.namespace != "library":
            return f"{self.namespace}/{self.name}"
        return self.name

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifests" / self.registry / self.namespace / self.name / self.tag


def _read_small(path: Path, limit: int, code: str) -> bytes:
    try:
        with path.open("rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                _fail(f"{path} is not a regular file", code)
            data = handle.read(limit + 1)
    except FileNotFoundError as exc:
        raise MeasurementError(f"{path}: no such file", code=code) from exc
    except OSError as exc:
        raise MeasurementError(f"cannot read {path}: {exc.strerror}", code=code) from exc
    if len(data) > limit:
        _fail(f"{path} is larger than {limit} bytes", code)
    return data


@dataclass(frozen=True, slots=True)
class _Descriptor:
    media_type: str
    digest: str  # "sha256:<64 hex>"
    size: int

    def to_json(self) -> dict[str, str | int]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def _descriptor(value: object, where: str) -> _Descriptor:
    code = "ollama_manifest_invalid"
    if not isinstance(value, dict):
        _fail(f"{where} is not an object", code)
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type or _CONTROL.search(media_type):
        _fail(f"{where}.mediaType is not a string", code)
    if not isinstance(digest, str) or not _OLLAMA_DIGEST.fullmatch(digest):
        _fail(f"{where}.digest is not sha256:<64 lower-case hex>", code)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 2**53:
        _fail(f"{where}.size is not a byte count", code)
    return _Descriptor(media_type, digest, size)


def _plan_ollama(model: OllamaModel, *, name: str | None) -> _Plan:
    label = f"ollama model {model.reference}:{model.tag}"
    raw = _read_small(model.manifest_path, _MAX_MANIFEST, "ollama_manifest_missing")
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise MeasurementError(
            f"{label}: manifest is not JSON", code="ollama_manifest_invalid"
        ) from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        _fail(f"{label}: manifest has no layers list", "ollama_manifest_invalid")
    if len(manifest["layers"]) > _MAX_LAYERS:
        _fail(f"{label}: more than {_MAX_LAYERS} layers", "ollama_manifest_invalid")
    config = _descriptor(manifest.get("config"), "config")
    layers = [_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(manifest["layers"])]
    # Each distinct blob is hashed once, even if several layers name it.
    sizes: dict[str, int] = {}
    for descriptor in (config, *layers):
        if sizes.setdefault(descriptor.digest, descriptor.size) != descriptor.size:
            _fail(f"{label}: blob {descriptor.digest} has two sizes", "ollama_manifest_invalid")
    paths = {digest: model.root / "blobs" / digest.replace(":", "-") for digest in sizes}
    for digest, path in paths.items():
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            _fail(f"{label}: blob {digest} is missing", "ollama_blob_missing")
        except OSError as exc:
            _fail(f"{label}: cannot stat blob {digest}: {exc.strerror}", "ollama_blob_missing")
        if actual != sizes[digest]:  # cheap check first: no need to hash a truncated blob
            _fail(
                f"{label}: blob {digest} has {actual} bytes, manifest says {sizes[digest]}",
                "ollama_blob_size",
            )
    digests = list(paths)
    manifest_sha256 = "sha256:" + hashlib.sha256(raw).hexdigest()

    def finish(results: Sequence[FileDigests]) -> Event:
        for digest, result in zip(digests, results, strict=True):
            if result.size != sizes[digest]:
                _fail(f"{label}: blob {digest} changed size", "ollama_blob_size")
            assert result.sha256 is not None
            if "sha256:" + result.sha256.hex() != digest:
                _fail(f"{label}: blob {digest} does not match its digest", "ollama_blob_digest")
        summary: dict[str, Any] = {
            "manifest": manifest_sha256,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
        details = {
            "model": model.reference,
            "tag": model.tag,
            "manifest": manifest_sha256,
            "layers": len(layers),
        }
        value = hashlib.sha384(rfc8785.dumps(summary)).digest()
        return _event("ollama_model", name or f"{model.reference}:{model.tag}", value, details)

    requests = tuple(HashRequest(paths[d], sha384=False, sha256=True) for d in digests)
    return _Plan(requests, finish, frozenset(os.path.realpath(r.path) for r in requests))


def measure_ollama_model(
    model: OllamaModel,
    *,
    name: str | None = None,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> Event:
    """``cllm.ollama_model``: an Ollama manifest and every blob it names, each re-hashed.

    Errors: ``ollama_manifest_missing``, ``ollama_manifest_invalid``, ``ollama_blob_missing``,
    ``ollama_blob_size``, ``ollama_blob_digest``, ``ollama_name_invalid``.
    """
    return _run([_plan_ollama(model, name=name)], workers=workers, progress=progress)[0]
