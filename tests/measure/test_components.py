"""Component measurement: files, directories, RECORD-checked distributions, Ollama models,
configuration, and the start-up sequence."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from cllm.errors import MeasurementError
from cllm.measure import (
    OllamaModel,
    _files,
    _startup,
    drop_secrets,
    measure_config,
    measure_directory,
    measure_distribution,
    measure_file,
    measure_ollama_model,
    measure_startup,
    redact_argv,
)


def sha384(data: bytes) -> bytes:
    return hashlib.sha384(data).digest()


def manifest(lines: Mapping[str, str]) -> bytes:
    """The documented manifest digest, written out independently of the implementation."""
    ordered = sorted(lines.items(), key=lambda item: item[0].encode())
    return sha384(b"".join(f"{path} {value}\n".encode() for path, value in ordered))


def tree(root: Path, files: Mapping[str, bytes]) -> Path:
    for relpath, content in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


FILES = {"index.html": b"<html>", "assets/app.js": b"js", "assets/a b.css": b"css"}


# --- Single file -------------------------------------------------------------------------------


def test_measure_file(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + os.urandom(5000))
    event = measure_file(path)
    assert event.type == "cllm.file"
    assert event.rtmr == 3
    assert event.name == "model.gguf"
    assert event.digest == sha384(path.read_bytes())
    assert event.to_json()["details"] == {"path": str(path), "size": 5004}
    assert measure_file(path, name="model").name == "model"


def test_measure_file_missing(tmp_path: Path) -> None:
    with pytest.raises(MeasurementError) as caught:
        measure_file(tmp_path / "nope.gguf")
    assert caught.value.code == "file_missing"


# --- Directory ---------------------------------------------------------------------------------


def test_directory_manifest_by_hand(tmp_path: Path) -> None:
    root = tree(tmp_path / "ui", FILES)
    event = measure_directory(root)
    expected = manifest({path: sha384(data).hex() for path, data in FILES.items()})
    assert event.digest == expected
    assert event.type == "cllm.directory"
    assert event.to_json()["details"] == {"path": str(root), "files": 3}


def test_directory_is_deterministic(tmp_path: Path) -> None:
    one = tree(tmp_path / "one", FILES)
    two = tree(tmp_path / "two", dict(reversed(list(FILES.items()))))
    assert measure_directory(one).digest == measure_directory(two).digest
    assert measure_directory(one, workers=1) == measure_directory(one, workers=4)


@pytest.mark.parametrize(
    "change",
    ["rename", "modify", "add", "add_empty", "move", "delete"],
)
def test_directory_digest_is_sensitive(tmp_path: Path, change: str) -> None:
    root = tree(tmp_path / "ui", FILES)
    before = measure_directory(root).digest
    if change == "rename":
        (root / "index.html").rename(root / "index.htm")
    elif change == "modify":
        (root / "assets/app.js").write_bytes(b"jS")
    elif change == "add":
        (root / "extra.js").write_bytes(b"evil()")
    elif change == "add_empty":
        (root / "assets/empty").write_bytes(b"")
    elif change == "move":
        (root / "assets/app.js").rename(root / "app.js")
    else:
        (root / "assets/app.js").unlink()
    assert measure_directory(root).digest != before


def test_empty_directories_are_not_measured(tmp_path: Path) -> None:
    root = tree(tmp_path / "ui", FILES)
    before = measure_directory(root).digest
    (root / "empty").mkdir()
    assert measure_directory(root).digest == before


def test_symlink_inside_is_recorded_not_followed(tmp_path: Path) -> None:
    root = tree(tmp_path / "ui", FILES)
    (root / "latest.js").symlink_to("assets/app.js")
    event = measure_directory(root)
    lines = {path: sha384(data).hex() for path, data in FILES.items()}
    lines["latest.js"] = "symlink:" + sha384(b"assets/app.js").hex()
    assert event.digest == manifest(lines)
    # Retargeting the link changes the digest even though both targets exist.
    (root / "latest.js").unlink()
    (root / "latest.js").symlink_to("index.html")
    assert measure_directory(root).digest != event.digest


def test_symlink_leaving_the_directory(tmp_path: Path) -> None:
    root = tree(tmp_path / "ui", FILES)
    (tmp_path / "outside.js").write_bytes(b"unmeasured")
    (root / "assets/out.js").symlink_to("../../outside.js")
    with pytest.raises(MeasurementError) as caught:
        measure_directory(root)
    assert caught.value.code == "symlink_escapes"
    event = measure_directory(root, allow_external_links=True)
    assert event.details["external_links"] == ("assets/out.js -> ../../outside.js",)


def test_directory_rejects_special_files_and_bad_names(tmp_path: Path) -> None:
    root = tree(tmp_path / "ui", FILES)
    os.mkfifo(root / "pipe")
    with pytest.raises(MeasurementError) as caught:
        measure_directory(root)
    assert caught.value.code == "unsupported_file_type"
    (root / "pipe").unlink()
    (root / "evil\nname").write_bytes(b"x")
    with pytest.raises(MeasurementError) as caught:
        measure_directory(root)
    assert caught.value.code == "unsafe_path"


def test_directory_missing_or_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(MeasurementError) as caught:
        measure_directory(tmp_path / "missing")
    assert caught.value.code == "directory_missing"
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(MeasurementError) as caught:
        measure_directory(tmp_path / "file")
    assert caught.value.code == "not_a_directory"


# --- Installed distribution (RECORD) -----------------------------------------------------------


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


PACKAGE = {
    "fakepkg/__init__.py": b"VALUE = 1\n",
    "fakepkg/data.bin": bytes(range(256)) * 100,
    "fakepkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n",
}
BYTECODE = "fakepkg/__pycache__/__init__.cpython-311.pyc"


def install(site: Path, files: Mapping[str, bytes] = PACKAGE, extra_rows: str = "") -> Path:
    """A distribution as an installer leaves it: files plus a RECORD with hashes and sizes."""
    tree(site, files)
    (site / BYTECODE).parent.mkdir(parents=True, exist_ok=True)
    (site / BYTECODE).write_bytes(b"compiled at install time")
    rows = [f"{path},{record_hash(data)},{len(data)}" for path, data in files.items()]
    rows += ["fakepkg-1.0.dist-info/RECORD,,", f"{BYTECODE},,"]
    (site / "fakepkg-1.0.dist-info/RECORD").write_text("\n".join(rows) + "\n" + extra_rows)
    return site / "fakepkg-1.0.dist-info"


def dist(info: Path) -> importlib.metadata.Distribution:
    return importlib.metadata.PathDistribution(info)


def test_distribution_digest_by_hand(tmp_path: Path) -> None:
    info = install(tmp_path / "site")
    event = measure_distribution(dist(info))
    assert event.digest == manifest({path: sha384(data).hex() for path, data in PACKAGE.items()})
    assert event.type == "cllm.distribution"
    assert event.name == "fakepkg"
    assert event.to_json()["details"] == {
        "distribution": "fakepkg",
        "version": "1.0",
        "files": 3,
        "editable": False,
    }


def test_distribution_by_name_from_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    info = install(site)
    monkeypatch.syspath_prepend(str(site))
    assert measure_distribution("fakepkg") == measure_distribution(dist(info))
    with pytest.raises(MeasurementError) as caught:
        measure_distribution("no-such-distribution-here")
    assert caught.value.code == "distribution_not_found"


def test_unhashed_bytecode_is_skipped_hashed_files_are_checked(tmp_path: Path) -> None:
    info = install(tmp_path / "site")
    before = measure_distribution(dist(info)).digest
    (tmp_path / "site" / BYTECODE).write_bytes(b"recompiled: other timestamp")
    assert measure_distribution(dist(info)).digest == before
    (tmp_path / "site/fakepkg/__init__.py").write_bytes(b"VALUE = 2\n")  # same size
    with pytest.raises(MeasurementError) as caught:
        measure_distribution(dist(info))
    assert caught.value.code == "record_hash_mismatch"


def test_unhashed_other_files_are_measured(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = install(site, extra_rows="fakepkg/extra.txt,,\n")
    (site / "fakepkg/extra.txt").write_bytes(b"one")
    before = measure_distribution(dist(info)).digest
    (site / "fakepkg/extra.txt").write_bytes(b"two")
    assert measure_distribution(dist(info)).digest != before


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda site: (site / "fakepkg/data.bin").write_bytes(b"short"), "record_size_mismatch"),
        (lambda site: (site / "fakepkg/data.bin").unlink(), "file_missing"),
        (lambda site: (site / "fakepkg-1.0.dist-info/RECORD").unlink(), "record_missing"),
        (
            lambda site: (site / "fakepkg-1.0.dist-info/RECORD").write_text(
                "fakepkg/__init__.py,md5=abc,10\n"
            ),
            "record_hash_unsupported",
        ),
        (
            lambda site: (site / "fakepkg-1.0.dist-info/RECORD").write_text("a,b\n"),
            "record_malformed",
        ),
        (
            lambda site: (site / "fakepkg-1.0.dist-info/RECORD").write_text(
                "fakepkg/__init__.py,sha256=!!!,10\n"
            ),
            "record_malformed",
        ),
        (
            lambda site: (site / "fakepkg-1.0.dist-info/RECORD").write_text(
                "fakepkg/__init__.py,,ten\n"
            ),
            "record_malformed",
        ),
        (
            lambda site: (site / "fakepkg-1.0.dist-info/RECORD").write_text(
                '"fakepkg/a\nb.py",,\n'
            ),
            "unsafe_path",
        ),
    ],
)
def test_distribution_rejects(tmp_path: Path, mutate: Any, code: str) -> None:
    site = tmp_path / "site"
    info = install(site)
    mutate(site)
    with pytest.raises(MeasurementError) as caught:
        measure_distribution(dist(info))
    assert caught.value.code == code


def editable_install(tmp_path: Path, pth: str | None = None) -> tuple[Path, Path]:
    """An editable install the way hatchling writes it: a .pth naming the source tree."""
    src = tree(tmp_path / "checkout/src", {"fakepkg/__init__.py": b"VALUE = 1\n"})
    (src / "fakepkg/__pycache__").mkdir()
    (src / "fakepkg/__pycache__/__init__.cpython-311.pyc").write_bytes(b"runtime bytecode")
    files = {
        "_editable_impl_fakepkg.pth": (pth if pth is not None else f"{src}\n").encode(),
        "fakepkg-1.0.dist-info/METADATA": PACKAGE["fakepkg-1.0.dist-info/METADATA"],
        "fakepkg-1.0.dist-info/direct_url.json": json.dumps(
            {"dir_info": {"editable": True}, "url": f"file://{tmp_path}/checkout"}
        ).encode(),
    }
    site = tmp_path / "site"
    tree(site, files)
    rows = [f"{path},{record_hash(data)},{len(data)}" for path, data in files.items()]
    (site / "fakepkg-1.0.dist-info/RECORD").write_text("\n".join(rows) + "\n")
    return site / "fakepkg-1.0.dist-info", src


def test_editable_install_measures_the_source_tree(tmp_path: Path) -> None:
    info, src = editable_install(tmp_path)
    event = measure_distribution(dist(info))
    assert event.details["editable"] is True
    assert event.details["files"] == 4  # .pth, METADATA, direct_url, __init__.py
    (src / "fakepkg/__pycache__/__init__.cpython-311.pyc").write_bytes(b"other bytecode")
    assert measure_distribution(dist(info)).digest == event.digest
    (src / "fakepkg/__init__.py").write_bytes(b"VALUE = 2\n")
    assert measure_distribution(dist(info)).digest != event.digest


def test_editable_install_with_import_hook_is_refused(tmp_path: Path) -> None:
    info, _ = editable_install(tmp_path, pth="import _fakepkg_finder; _fakepkg_finder.install()\n")
    with pytest.raises(MeasurementError) as caught:
        measure_distribution(dist(info))
    assert caught.value.code == "editable_unsupported"


def test_the_real_cllm_distribution_is_measurable() -> None:
    event = measure_distribution("confidential-llm")
    assert event.details["distribution"] == "confidential-llm"


# --- Ollama model ------------------------------------------------------------------------------


def ollama_store(root: Path, blobs: list[tuple[str, bytes]]) -> tuple[OllamaModel, bytes]:
    """``root`` laid out like ~/.ollama/models with one model, library/tiny:1b."""
    (root / "blobs").mkdir(parents=True)
    descriptors = []
    for media_type, data in blobs:
        hex_digest = hashlib.sha256(data).hexdigest()
        (root / "blobs" / f"sha256-{hex_digest}").write_bytes(data)
        descriptors.append(
            {"mediaType": media_type, "digest": f"sha256:{hex_digest}", "size": len(data)}
        )
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": descriptors[0],
        "layers": descriptors[1:],
    }
    raw = json.dumps(manifest_doc, indent=2).encode()
    path = root / "manifests/registry.ollama.ai/library/tiny/1b"
    path.parent.mkdir(parents=True)
    path.write_bytes(raw)
    return OllamaModel(root, "tiny", "1b"), raw


BLOBS = [
    ("application/vnd.docker.container.image.v1+json", b'{"model_family":"llama"}'),
    ("application/vnd.ollama.image.model", b"GGUF" + bytes(10_000)),
    ("application/vnd.ollama.image.template", b"{{ .Prompt }}"),
]


def test_ollama_model_digest_by_hand(tmp_path: Path) -> None:
    model, raw = ollama_store(tmp_path / "models", BLOBS)
    event = measure_ollama_model(model)
    descriptors = [
        {"mediaType": mt, "digest": "sha256:" + hashlib.sha256(d).hexdigest(), "size": len(d)}
        for mt, d in BLOBS
    ]
    summary: dict[str, Any] = {
        "manifest": "sha256:" + hashlib.sha256(raw).hexdigest(),
        "config": descriptors[0],
        "layers": descriptors[1:],
    }
    assert event.digest == sha384(rfc8785.dumps(summary))
    assert event.type == "cllm.ollama_model"
    assert event.name == "tiny:1b"
    assert event.to_json()["details"] == {
        "model": "tiny",
        "tag": "1b",
        "manifest": summary["manifest"],
        "layers": 2,
    }


def blob_path(root: Path, data: bytes) -> Path:
    return root / "blobs" / f"sha256-{hashlib.sha256(data).hexdigest()}"


def test_ollama_tampered_blob(tmp_path: Path) -> None:
    model, _ = ollama_store(tmp_path / "models", BLOBS)
    blob = blob_path(model.root, BLOBS[1][1])
    blob.write_bytes(b"GGUF" + b"\x01" + bytes(9_999))  # same size, other content
    with pytest.raises(MeasurementError) as caught:
        measure_ollama_model(model)
    assert caught.value.code == "ollama_blob_digest"


def test_ollama_wrong_size_and_missing_blob(tmp_path: Path) -> None:
    model, _ = ollama_store(tmp_path / "models", BLOBS)
    blob = blob_path(model.root, BLOBS[2][1])
    blob.write_bytes(BLOBS[2][1] + b"!")
    with pytest.raises(MeasurementError) as caught:
        measure_ollama_model(model)
    assert caught.value.code == "ollama_blob_size"
    blob.unlink()
    with pytest.raises(MeasurementError) as caught:
        measure_ollama_model(model)
    assert caught.value.code == "ollama_blob_missing"


@pytest.mark.parametrize(
    ("manifest_text", "code"),
    [
        (b"not json", "ollama_manifest_invalid"),
        (b'{"layers": "x"}', "ollama_manifest_invalid"),
        (
            b'{"layers": [], "config": {"mediaType": "x", "digest": "sha256:00", "size": 1}}',
            "ollama_manifest_invalid",
        ),
        (
            b'{"layers": [], "config": {"mediaType": "x", "digest": "sha256:'
            + b"a" * 64
            + b'", "size": -1}}',
            "ollama_manifest_invalid",
        ),
    ],
)
def test_ollama_bad_manifest(tmp_path: Path, manifest_text: bytes, code: str) -> None:
    model, _ = ollama_store(tmp_path / "models", BLOBS)
    model.manifest_path.write_bytes(manifest_text)
    with pytest.raises(MeasurementError) as caught:
        measure_ollama_model(model)
    assert caught.value.code == code


def test_ollama_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(MeasurementError) as caught:
        measure_ollama_model(OllamaModel(tmp_path, "absent"))
    assert caught.value.code == "ollama_manifest_missing"


def test_ollama_references(tmp_path: Path) -> None:
    assert OllamaModel.parse("deepseek-r1:7b", root=tmp_path) == OllamaModel(
        tmp_path, "deepseek-r1", "7b"
    )
    assert OllamaModel.parse("smollm2", root=tmp_path).tag == "latest"
    user = OllamaModel.parse("someone/model:q4", root=tmp_path)
    assert user.manifest_path == tmp_path / "manifests/registry.ollama.ai/someone/model/q4"
    assert user.reference == "someone/model"
    for bad in ("../../etc/passwd", "a/b/c/d", "model:..", "..", "mo del"):
        with pytest.raises(MeasurementError) as caught:
            OllamaModel.parse(bad, root=tmp_path)
        assert caught.value.code == "ollama_name_invalid"


# --- Configuration -----------------------------------------------------------------------------


def test_config_digest_is_jcs_of_details() -> None:
    event = measure_config({"port": 8080, "tee": "auto", "nested": {"b": [1, True]}}, ["cllm"])
    details = event.to_json()["details"]
    assert details == {
        "settings": {"port": 8080, "tee": "auto", "nested": {"b": [1, True]}},
        "argv": ["cllm"],
    }
    assert event.digest == sha384(rfc8785.dumps(details))
    assert event.type == "cllm.config"


@pytest.mark.parametrize("bad", [{"temperature": 0.7}, {"upstream": None}, {"x": b"bytes"}])
def test_config_rejects_non_event_values(bad: dict[str, object]) -> None:
    with pytest.raises(MeasurementError) as caught:
        measure_config(bad, [])
    assert caught.value.code == "config_invalid"


def test_config_argv_must_be_strings() -> None:
    with pytest.raises(MeasurementError) as caught:
        measure_config({}, "cllm serve")
    assert caught.value.code == "config_invalid"


def test_drop_secrets() -> None:
    settings = {
        "port": 8080,
        "API_KEY": "k",
        "hf_token": "t",
        "ClientSecret": "s",
        "db": {"password": "p", "host": "h", "servers": [{"passwordFile": "x", "name": "n"}]},
        "max_tokens": 512,  # matches too: over-dropping is the safe side
    }
    assert drop_secrets(settings) == {"port": 8080, "db": {"host": "h", "servers": [{"name": "n"}]}}
    assert settings["API_KEY"] == "k"  # a copy


def test_redact_argv() -> None:
    argv = ["cllm", "serve", "--api-key", "sk-1", "--token=abc", "--port", "80", "--secret-file"]
    assert redact_argv(argv) == [
        "cllm",
        "serve",
        "--api-key",
        "<redacted>",
        "--token=<redacted>",
        "--port",
        "80",
        "--secret-file",
    ]


# --- Start-up sequence -------------------------------------------------------------------------


@pytest.fixture
def fake_llama_cpp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed ``llama-cpp-python`` (import name ``llama_cpp``) first on sys.path. The
    real one may be installed and already imported: hide it for the test."""
    site = tmp_path / "engine-site"
    files = {
        "llama_cpp/__init__.py": b"",
        "llama_cpp/lib/libllama.so": b"\x7fELF" + bytes(2000),
        "llama_cpp_python-0.3.0.dist-info/METADATA": (
            b"Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 0.3.0\n"
        ),
    }
    tree(site, files)
    rows = [f"{path},{record_hash(data)},{len(data)}" for path, data in files.items()]
    (site / "llama_cpp_python-0.3.0.dist-info/RECORD").write_text("\n".join(rows) + "\n")
    monkeypatch.syspath_prepend(str(site))
    for name in [m for m in sys.modules if m == "llama_cpp" or m.startswith("llama_cpp.")]:
        monkeypatch.delitem(sys.modules, name)
    return site


def test_startup_order_embedded_engine(tmp_path: Path, fake_llama_cpp: Path) -> None:
    model = tmp_path / "smollm2.gguf"
    model.write_bytes(b"GGUF" + os.urandom(3000))
    ui = tree(tmp_path / "static", FILES)
    reported: list[int] = []
    events = measure_startup(
        model=model,
        settings={"engine": "llama-cpp", "api_key": "secret!", "port": 8080},
        argv=["cllm", "serve", "--api-key", "secret!", "--model", str(model)],
        ui_dir=ui,
        progress=reported.append,
        show_progress=False,
    )
    # type: the component kind (policies match it); details.method: how it was measured.
    assert [(event.type, event.details["method"]) for event in events] == [
        ("cllm.package", "distribution"),
        ("cllm.engine", "distribution"),
        ("cllm.model", "file"),
        ("cllm.ui", "directory"),
        ("cllm.config", "config"),
    ]
    assert [event.name for event in events][:3] == [
        "confidential-llm",
        "llama_cpp_python",
        "smollm2.gguf",
    ]
    assert events[1].details["distribution"] == "llama_cpp_python"
    assert events[2].digest == measure_file(model, name="model").digest
    config = events[4].to_json()
    assert "secret!" not in json.dumps(config)
    assert events[4].details["settings"] == {"engine": "llama-cpp", "port": 8080}
    # Every measured byte was reported, including the cllm package's files.
    assert sum(reported) > model.stat().st_size + sum(len(d) for d in FILES.values())


def test_startup_without_llama_cpp_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.distribution

    def without_engine(name: str) -> importlib.metadata.Distribution:
        if name == "llama-cpp-python":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_engine)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with pytest.raises(MeasurementError) as caught:
        measure_startup(model=model, settings={}, argv=[], show_progress=False)
    assert caught.value.code == "engine_not_installed"


def test_startup_upstream_engine_needs_paths(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with pytest.raises(MeasurementError) as caught:
        measure_startup(model=model, engine="openai", settings={}, argv=[], show_progress=False)
    assert caught.value.code == "engine_unmeasured"
    with pytest.raises(MeasurementError) as caught:
        measure_startup(model=model, engine="vllm", settings={}, argv=[], show_progress=False)
    assert caught.value.code == "engine_unknown"


def test_startup_upstream_ollama(tmp_path: Path) -> None:
    model, _ = ollama_store(tmp_path / "models", BLOBS)
    binary = tmp_path / "ollama"
    binary.write_bytes(b"\x7fELF ollama")
    venv = tree(tmp_path / "vllm-env", {"lib/vllm/__init__.py": b""})
    events = measure_startup(
        model=model,
        engine="ollama",
        engine_paths=[binary, venv],
        ui_dir=tmp_path / "not-built",
        settings={},
        argv=["cllm", "serve", "--engine", "ollama"],
        show_progress=False,
    )
    assert [(event.type, event.details["method"]) for event in events] == [
        ("cllm.package", "distribution"),
        ("cllm.engine", "file"),
        ("cllm.engine", "directory"),
        ("cllm.model", "ollama_model"),
        ("cllm.config", "config"),
    ]
    assert events[3].digest == measure_ollama_model(model).digest
    # The same artifacts give the same events: this is how reference values are computed.
    again = measure_startup(
        model=model,
        engine="ollama",
        engine_paths=[binary, venv],
        settings={},
        argv=["cllm", "serve", "--engine", "ollama"],
        show_progress=False,
        workers=1,
    )
    assert again == events


def test_import_origin_must_be_measured(tmp_path: Path) -> None:
    plan = _files._plan_file(tmp_path / "x", name="x")
    with pytest.raises(MeasurementError) as caught:
        _startup._covers_import(plan, "json")
    assert caught.value.code == "package_not_measured"
