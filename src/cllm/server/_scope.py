"""Where prompts go (``upstream_scope``) and whether compiled bytecode can be read from disk
(``bytecode``): both recorded in the ``cllm.config`` event, both refused at start when unsafe.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from cllm._internal.net import is_loopback_host
from cllm.errors import ServerError

__all__ = [
    "BytecodeState",
    "UpstreamScope",
    "bytecode_state",
    "classify_upstream",
    "host_is_loopback",
    "measured_code_trees",
    "require_local_upstream",
    "require_unreadable_bytecode",
]

_log = logging.getLogger(__name__)

Scope = Literal["embedded", "loopback", "remote"]


@dataclass(frozen=True, slots=True)
class UpstreamScope:
    scope: Scope
    host: str | None  # the upstream's host name or address (loopback and remote)

    def settings(self) -> dict[str, object]:
        """What the config event records: ``upstream_scope``, and ``upstream_host`` for
        remote upstreams."""
        doc: dict[str, object] = {"upstream_scope": self.scope}
        if self.scope == "remote":
            doc["upstream_host"] = self.host or ""
        return doc


# Other names count as remote whatever they resolve to now: a name's answer can change after
# the server started.
host_is_loopback = is_loopback_host


def classify_upstream(
    upstream: str | None,
    *,
    engine: str,
    is_loopback: Callable[[str], bool] = host_is_loopback,
) -> UpstreamScope:
    """The scope of ``engine``'s upstream URL (``embedded`` for llama-cpp). ``is_loopback``
    is the address classification (tests inject one; nothing is resolved here)."""
    if engine == "llama-cpp":
        return UpstreamScope("embedded", None)
    if upstream is None:
        raise ServerError(f"engine {engine} needs an upstream URL", code="config_invalid")
    try:
        parts = urlsplit(upstream)
        host = parts.hostname
    except ValueError as exc:
        raise ServerError(
            f"--upstream {upstream[:100]!r} is not a URL", code="config_invalid"
        ) from exc
    if parts.scheme not in ("http", "https") or not host:
        raise ServerError(
            f"--upstream {upstream[:100]!r} is not an http(s) URL with a host",
            code="config_invalid",
        )
    host = host.lower().rstrip(".")
    return UpstreamScope("loopback" if is_loopback(host) else "remote", host)


def require_local_upstream(scope: UpstreamScope, *, allow_remote_upstream: bool) -> None:
    """A remote upstream sees every decrypted prompt: refused unless allowed, and then
    logged loudly (the verdict says ``upstream_not_local`` unless the policy allows it)."""
    if scope.scope != "remote":
        return
    if not allow_remote_upstream:
        raise ServerError(
            f"the upstream {scope.host} is not on this machine's loopback: prompts would leave "
            "the TD. Pass --allow-remote-upstream to do so knowingly (verifiers then say "
            "upstream_not_local unless their policy allows this host)",
            code="remote_upstream_refused",
        )
    _log.warning(
        "--allow-remote-upstream: decrypted prompts are forwarded to %s, outside the TD", scope.host
    )


# --- compiled bytecode --------------------------------------------------------------------------

BytecodeMode = Literal["pycache_prefix", "no_pycache", "readable"]
_PACKAGES: Final = {"llama-cpp": ("cllm", "llama_cpp")}


@dataclass(frozen=True, slots=True)
class BytecodeState:
    mode: BytecodeMode
    reason: str

    @property
    def safe(self) -> bool:
        return self.mode != "readable"


def measured_code_trees(engine: str) -> list[Path]:
    """The directories of the Python packages that are measured and run in this process."""
    trees: list[Path] = []
    for module in _PACKAGES.get(engine, ("cllm",)):
        spec = importlib.util.find_spec(module)
        for location in (spec.submodule_search_locations or []) if spec else []:
            trees.append(Path(os.path.realpath(location)))
    return trees


def _process_start_time() -> float | None:
    """This process's start (Unix seconds) from /proc, or None when it cannot be told."""
    try:
        stat_fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(stat_fields[19])  # field 22 (starttime), counted after "pid (comm) state"
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _files(tree: Path, suffix: str) -> Iterable[Path]:
    for directory, _, names in os.walk(tree):
        for name in names:
            if name.endswith(suffix):
                yield Path(directory) / name


def bytecode_state(trees: Sequence[Path]) -> BytecodeState:
    """Whether CPython can run bytecode from disk, instead of the measured source, for code in
    ``trees``. Safe: (1) ``sys.pycache_prefix`` is set and holds no bytecode for these trees
    older than this process (a fresh prefix: whatever is there, this process compiled from
    the measured source), or (2) no prefix, ``sys.dont_write_bytecode`` and no ``__pycache__``
    in the trees. Either way no sourceless ``.pyc`` may sit beside the sources."""
    for tree in trees:
        for path in _files(tree, ".pyc"):
            if path.parent.name != "__pycache__":
                return BytecodeState("readable", f"sourceless bytecode {path} would be imported")
    prefix = sys.pycache_prefix
    if prefix:
        started = _process_start_time()
        if started is None:
            return BytecodeState("readable", "cannot tell this process's start time")
        for tree in trees:
            mirror = Path(prefix) / str(tree).lstrip(os.sep)
            for path in _files(mirror, ".pyc"):
                try:
                    written = path.stat().st_mtime
                except OSError:
                    continue
                if written < started - 1:  # /proc's start time has 1/CLK_TCK resolution
                    return BytecodeState(
                        "readable", f"{path} in the bytecode cache predates this process"
                    )
        return BytecodeState("pycache_prefix", f"fresh sys.pycache_prefix {prefix}")
    if not sys.dont_write_bytecode:
        return BytecodeState(
            "readable", "bytecode is cached next to the sources (no PYTHONPYCACHEPREFIX)"
        )
    for tree in trees:
        for directory, subdirectories, _ in os.walk(tree):
            if "__pycache__" in subdirectories:
                return BytecodeState(
                    "readable", f"{Path(directory) / '__pycache__'} may hold unmeasured bytecode"
                )
    return BytecodeState("no_pycache", "no __pycache__ in the measured trees, none written")


def require_unreadable_bytecode(trees: Sequence[Path]) -> BytecodeState:
    """``cllm serve``'s start check: refuse (``bytecode_readable``) unless bytecode cannot be
    read from disk for the measured packages."""
    state = bytecode_state(trees)
    if not state.safe:
        raise ServerError(
            f"compiled bytecode could run instead of the measured source: {state.reason}. "
            "Start with PYTHONDONTWRITEBYTECODE=1 PYTHONPYCACHEPREFIX=<a fresh empty "
            "directory> (or remove every __pycache__ of the measured packages)",
            code="bytecode_readable",
        )
    return state
