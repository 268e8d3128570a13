"""The state directory: where per-machine secrets and public artifacts of cllm live.

``$CLLM_STATE_DIR``, else ``$XDG_DATA_HOME/cllm``, else ``~/.local/share/cllm``. Every file is
created 0600 (the directory 0700) and appears atomically, so a server and a verifier that start
together on one machine end up with the same contents.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from pathlib import Path

from cllm._internal.files import ensure_dir, publish_file
from cllm.errors import TeeError

__all__ = ["default_state_dir", "ensure_dir", "publish_file", "read_or_create_secret"]

_log = logging.getLogger(__name__)


def default_state_dir(env: Mapping[str, str], home: Path) -> Path:
    if env.get("CLLM_STATE_DIR"):
        return Path(env["CLLM_STATE_DIR"])
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]) / "cllm"
    return home / ".local" / "share" / "cllm"


def read_or_create_secret(path: Path, size: int) -> bytes:
    """A random secret of ``size`` bytes kept at ``path``; created on first use."""
    if not path.exists():
        created = publish_file(path, secrets.token_bytes(size), replace=False)
        if created:
            _log.info("created %s", path)
    try:
        value = path.read_bytes()
    except OSError as exc:
        raise TeeError(f"cannot read {path}: {exc.strerror}", code="state_dir") from exc
    if len(value) != size:
        raise TeeError(f"{path} is corrupt ({len(value)} bytes, expected {size})", code="state_dir")
    return value
