"""Component measurement of single files (``cllm.file``) and directories (``cllm.directory``).

The manifest and the symlink rule: see ``cllm.measure._plan``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cllm.measure._event import Event
from cllm.measure._hashing import (
    FileDigests,
    HashRequest,
    ProgressCallback,
)
from cllm.measure._plan import (
    PathArg,
    _absolute,
    _check_name,
    _event,
    _fail,
    _manifest_digest,
    _Plan,
    _run,
)

__all__ = ["measure_directory", "measure_file"]


# --- Single file -------------------------------------------------------------------------------


def _plan_file(path: PathArg, *, name: str | None) -> _Plan:
    target = Path(path)
    shown = _absolute(path)

    def finish(results: Sequence[FileDigests]) -> Event:
        (result,) = results
        assert result.sha384 is not None
        details = {"path": shown, "size": result.size}
        return _event("file", name or target.name or shown, result.sha384, details)

    return _Plan((HashRequest(target),), finish, frozenset({os.path.realpath(target)}))


def measure_file(
    path: PathArg, *, name: str | None = None, progress: ProgressCallback | None = None
) -> Event:
    """``cllm.file``: the streamed SHA-384 of one regular file (default name: its basename)."""
    return _run([_plan_file(path, name=name)], workers=1, progress=progress)[0]


# --- Directory ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TreeEntry:
    relpath: str
    path: Path
    link_target: bytes | None  # None: a regular file


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def _walk(
    root: Path, *, allow_external_links: bool, skip_pycache: bool = False
) -> tuple[list[_TreeEntry], list[str]]:
    """Every file and symlink under ``root`` (not following links) and the external links."""
    if not root.exists():
        _fail(f"{root}: no such directory", "directory_missing")
    if not root.is_dir():
        _fail(f"{root} is not a directory", "not_a_directory")
    root_real = os.path.realpath(root)
    entries: list[_TreeEntry] = []
    external: list[str] = []
    stack: list[tuple[str, str]] = [("", root_real)]
    while stack:
        prefix, directory = stack.pop()
        try:
            with os.scandir(directory) as scan:
                children = list(scan)
        except OSError as exc:
            _fail(f"cannot list {directory}: {exc.strerror}", "directory_unreadable")
        for child in children:
            relpath = prefix + child.name
            _check_name(relpath, root)
            try:
                if child.is_symlink():
                    target = os.readlink(child.path)
                    if not _inside(os.path.realpath(child.path), root_real):
                        if not allow_external_links:
                            _fail(
                                f"{root}: symlink {relpath} -> {target} leaves the directory",
                                "symlink_escapes",
                            )
                        external.append(f"{relpath} -> {target}")
                    entries.append(_TreeEntry(relpath, Path(child.path), os.fsencode(target)))
                elif child.is_dir(follow_symlinks=False):
                    if not (skip_pycache and child.name == "__pycache__"):
                        stack.append((relpath + "/", child.path))
                elif child.is_file(follow_symlinks=False):
                    entries.append(_TreeEntry(relpath, Path(child.path), None))
                else:
                    _fail(f"{root}: {relpath} is not a file or directory", "unsupported_file_type")
            except OSError as exc:
                _fail(f"cannot read {child.path}: {exc.strerror}", "directory_unreadable")
    return entries, sorted(external)


def _tree_lines(
    entries: Sequence[_TreeEntry], results: Iterable[FileDigests]
) -> list[tuple[str, str]]:
    files = iter(results)
    lines: list[tuple[str, str]] = []
    for entry in entries:
        if entry.link_target is None:
            digest = next(files).sha384
            assert digest is not None
            lines.append((entry.relpath, digest.hex()))
        else:
            lines.append(
                (entry.relpath, "symlink:" + hashlib.sha384(entry.link_target).hexdigest())
            )
    return lines


def _file_requests(entries: Sequence[_TreeEntry]) -> tuple[HashRequest, ...]:
    return tuple(
        HashRequest(entry.path, follow_symlinks=False)
        for entry in entries
        if entry.link_target is None
    )


def _plan_directory(path: PathArg, *, name: str | None, allow_external_links: bool) -> _Plan:
    root = Path(path)
    shown = _absolute(path)
    entries, external = _walk(root, allow_external_links=allow_external_links)

    def finish(results: Sequence[FileDigests]) -> Event:
        digest, count = _manifest_digest(_tree_lines(entries, results), root)
        details: dict[str, object] = {"path": shown, "files": count}
        if external:
            details["external_links"] = external
        return _event("directory", name or root.name or shown, digest, details)

    covers = frozenset(os.path.realpath(e.path) for e in entries if e.link_target is None)
    return _Plan(_file_requests(entries), finish, covers)


def measure_directory(
    path: PathArg,
    *,
    name: str | None = None,
    allow_external_links: bool = False,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> Event:
    """``cllm.directory``: SHA-384 over the sorted manifest of every file under ``path``.

    See the module docstring for the exact manifest and the symlink rule.
    """
    plan = _plan_directory(path, name=name, allow_external_links=allow_external_links)
    return _run([plan], workers=workers, progress=progress)[0]
