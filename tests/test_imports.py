"""No private cross-package imports: a package uses another only through its public names.

Each package of ``cllm`` keeps its modules private (``cllm.<pkg>._x``) behind a short
``__all__``; code several packages share lives in ``cllm._internal``. This test reads every
module under ``src/cllm`` (AST only, nothing imported) and fails on any import, at any depth
(lazy imports inside functions included), that reaches into another package's private module
or private name, or into a private top-level module other than ``cllm._internal``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "cllm"


def _owner(path: Path) -> str:
    """The package a module belongs to: ``cllm/x/...`` -> ``x``, ``cllm/token.py`` -> ``token``."""
    parts = path.relative_to(SRC).parts
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def _module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ["cllm", *parts]


def _imported(tree: ast.AST, path: Path) -> list[tuple[int, str]]:
    """Every dotted name an import statement reaches, ``from a import b`` as ``a.b``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _module_name(path)
                if path.name != "__init__.py":
                    package = package[:-1]
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return found


def _reaches_private(owner: str, name: str) -> bool:
    """``cllm._private`` (a top-level private module other than ``_internal``), or anything
    private inside another package: ``cllm.<other>._x``, ``cllm.<other>.y._z``."""
    parts = name.split(".")
    if parts[0] != "cllm" or len(parts) < 2 or parts[1] in (owner, "_internal"):
        return False
    return any(part.startswith("_") and part != "__version__" for part in parts[1:])


def violations(path: Path) -> list[str]:
    owner = _owner(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(SRC.parent)}:{line}: {name}"
        for line, name in _imported(tree, path)
        if _reaches_private(owner, name)
    ]


def test_the_rule_catches_what_it_should() -> None:
    # The rule itself, on a made-up module placed as if it were src/cllm/server/_probe.py.
    module = SRC / "server" / "_probe.py"
    source = (
        "from cllm.tee._state import publish_file\n"
        "from cllm.quote import _layout\n"
        "import cllm.gpu._backend\n"
        "from cllm._transport import run_guarded\n"
        "from cllm.server._guard import error_body\n"
        "from cllm._internal.files import publish_file as p\n"
        "from cllm.tee import TeeBackend\n"
        "from cllm import __version__\n"
        "from ._guard import RequestGuard\n"
        "def lazy():\n"
        "    from cllm.measure._event import freeze_json\n"
    )
    tree = ast.parse(source)
    reached = [name for _, name in _imported(tree, module)]
    assert "cllm.server._guard.RequestGuard" in reached  # relative import resolved
    flagged = [name for _, name in _imported(tree, module) if _reaches_private("server", name)]
    assert flagged == [
        "cllm.tee._state.publish_file",
        "cllm.quote._layout",
        "cllm.gpu._backend",
        "cllm._transport.run_guarded",
        "cllm.measure._event.freeze_json",
    ]


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_private_cross_package_import(path: Path) -> None:
    assert violations(path) == []
