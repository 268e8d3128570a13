"""Every error code raised in src/ is documented in docs/ (tools and users match on codes, so an
undocumented one is a contract nobody can rely on)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")
# Calls with a code among their first two arguments (policy findings, verdicts, failures).
_CODE_CALLS = {"Reason", "_contraindicated", "_fail", "add", "find", "Permit"}


def _literal(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if _CODE.fullmatch(node.value) else None
    return None


def codes_in(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "code" and (code := _literal(keyword.value)):
                    found.add(code)
            callee = node.func
            name = callee.id if isinstance(callee, ast.Name) else getattr(callee, "attr", "")
            if name in _CODE_CALLS:
                found.update(c for arg in node.args[:2] if (c := _literal(arg)))
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = any(isinstance(t, ast.Name) and t.id == "default_code" for t in targets)
            if named and node.value is not None and (code := _literal(node.value)):
                found.add(code)
    # Statuses passed to add() beside the code are vocabulary, not codes.
    return found - {"affirming", "warning", "contraindicated"}


def raised_codes() -> dict[str, Path]:
    codes: dict[str, Path] = {}
    for path in sorted((REPO / "src" / "cllm").rglob("*.py")):
        for code in codes_in(ast.parse(path.read_text(), filename=str(path))):
            codes.setdefault(code, path.relative_to(REPO))
    return codes


def documented_words() -> set[str]:
    words: set[str] = set()
    for path in (REPO / "docs").glob("*.md"):
        words.update(re.findall(r"[a-z0-9_]+", path.read_text()))
    return words


def test_the_scan_finds_codes_of_each_kind() -> None:
    tree = ast.parse(
        "class E:\n    default_code = 'a_b'\n"
        "raise X('m', code='c_d')\nReason('e_f', 'm')\nadd('warning', 'g_h', 'm')\n"
        "f(code=dynamic)\nReason('not a code', 'm')\n"
    )
    assert codes_in(tree) == {"a_b", "c_d", "e_f", "g_h"}


def test_every_raised_code_is_documented() -> None:
    codes = raised_codes()
    assert len(codes) > 100  # the scan sees the whole tree
    words = documented_words()
    missing = {code: str(path) for code, path in codes.items() if code not in words}
    assert missing == {}, f"document these codes in docs/ (docs/errors.md): {missing}"
