"""Files that appear atomically with mode 0600 (directories 0700): the state directory's
secrets, tokens, release artifacts and simulated evidence are all written this way, so two
processes that start together on one machine end up with the same contents."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from cllm.errors import TeeError

__all__ = ["ensure_dir", "publish_file"]


def ensure_dir(path: Path) -> Path:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise TeeError(
            f"cannot create state directory {path}: {exc.strerror}", code="state_dir"
        ) from exc
    return path


def publish_file(path: Path, content: bytes, *, replace: bool) -> bool:
    """Write ``content`` to ``path`` (0600) atomically. With ``replace=False`` an existing
    file wins and False is returned; the caller then reads what the other writer put there."""
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails if the file exists: first writer wins
        except FileExistsError:
            return False
        return True
    except OSError as exc:
        raise TeeError(f"cannot write {path}: {exc.strerror}", code="state_dir") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
