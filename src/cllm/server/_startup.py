"""Start-up of ``cllm serve``: choose the TEE, measure every component into RTMR3 (before the
server listens), create the per-boot keys, and prepare the engine."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rich.console import Console

from cllm.engine import (
    Engine,
    LlamaCppEngine,
    ModelInfo,
    OllamaEngine,
    OpenAIEngine,
    default_model_path,
)
from cllm.errors import ServerError
from cllm.gpu import SelectedGpuBackend
from cllm.measure import (
    Event,
    EventLog,
    MemfdFile,
    OllamaModel,
    count_starts,
    measure_startup,
    snapshot_directory,
    snapshot_file_to_memfd,
    start_marker,
)
from cllm.quote import parse_quote
from cllm.server._gpu import gpu_boot_gate
from cllm.server._keys import ServerKeys, check_tls_pair
from cllm.server._runtime import Runtime
from cllm.server._scope import (
    BytecodeState,
    bytecode_state,
    classify_upstream,
    host_is_loopback,
    measured_code_trees,
    require_local_upstream,
)
from cllm.server._settings import ServeSettings
from cllm.tee import SelectedBackend, SimulatedTdBackend, rtmr3_extender, select_backend
from cllm.verify import Collateral

__all__ = [
    "DEFAULT_OLLAMA_UPSTREAM",
    "StartupReport",
    "build_runtime",
    "measured_settings",
    "static_dir",
]

DEFAULT_OLLAMA_UPSTREAM: Final = "http://127.0.0.1:11434"
DEFAULT_MODEL_ID: Final = "smollm2-135m-instruct"


def static_dir() -> Path:
    """Where the built UI lives inside the package (``ui/`` builds into it)."""
    return Path(__file__).resolve().parent / "static"


@dataclass(frozen=True, slots=True)
class StartupReport:
    tee: str
    tee_reason: str
    events: tuple[Event, ...]
    rtmr3: bytes
    engine: str
    model: str
    gpu: str = "off"  # the GPU gate's outcome: attested, unattested, absent, off
    gpu_reason: str = ""  # the backend chosen and why, and why unattested


def _ollama_root(settings: ServeSettings) -> Path:
    if settings.ollama_models is not None:
        return settings.ollama_models
    env = os.environ.get("OLLAMA_MODELS")
    return Path(env) if env else Path.home() / ".ollama" / "models"


def _model_event(events: Sequence[Event]) -> Event | None:
    return next((e for e in events if e.type == "cllm.model"), None)


def _model_info(model_id: str, event: Event | None, size: int) -> ModelInfo:
    digest = f"sha384:{event.digest.hex()}" if event is not None else ""
    return ModelInfo(id=model_id, size=size, digest=digest)


def build_runtime(
    settings: ServeSettings,
    *,
    argv: Sequence[str],
    clock: Callable[[], float],
    tls_cert_pem: bytes | None = None,
    console: Console | None = None,
    backend: SelectedBackend | None = None,
    is_loopback: Callable[[str], bool] = host_is_loopback,
    bytecode: BytecodeState | None = None,
    gpu_backend: SelectedGpuBackend | None = None,
) -> tuple[Runtime, StartupReport]:
    """Everything ``cllm serve`` does before it listens. Raises ``CllmError`` subclasses with
    codes (``model_not_found``, ``engine_unmeasured``, ``tsm_unavailable``, ...).
    ``tls_cert_pem`` is the in-memory certificate of ``--tls self-signed``; with
    ``--tls-cert`` the file is read instead. Its SPKI hash goes into every binding.
    ``backend`` replaces ``select_backend`` (tests inject a TD whose RTMR3 survives a
    "restart"); ``is_loopback`` classifies the upstream's host (tests inject one).
    ``bytecode`` is the state ``cllm serve`` checked before importing the server; else it is
    examined here. Either way the config event records it, with where prompts go
    (``upstream_scope``, ``upstream_host``); a remote upstream without
    ``allow_remote_upstream`` is refused (``remote_upstream_refused``).

    Each start first logs a start marker (``cllm.start``); the UI is read once into memory
    and the embedded model copied into a sealed memfd, and both are measured from, and later
    served and loaded from, those very bytes."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ServerError("--tls-cert and --tls-key go together", code="tls_invalid")
    if settings.tls_cert is not None and settings.tls_self_signed:
        raise ServerError("choose --tls-cert/--tls-key or --tls self-signed", code="tls_invalid")
    if settings.tls_cert is not None and settings.tls_key is not None:
        check_tls_pair(settings.tls_cert, settings.tls_key)

    model_arg: Path | OllamaModel | None
    if settings.engine == "llama-cpp":
        if settings.upstream is not None:
            raise ServerError(
                "--upstream is for the ollama and openai engines", code="config_invalid"
            )
        model_arg = Path(settings.model) if settings.model else default_model_path()
        if not model_arg.is_file():
            raise ServerError(f"no model file at {model_arg}", code="model_not_found")
    elif settings.engine == "ollama":
        if not settings.model:
            raise ServerError("--engine ollama needs --model NAME[:TAG]", code="config_invalid")
        model_arg = OllamaModel.parse(settings.model, root=_ollama_root(settings))
    else:
        if not settings.upstream or not settings.model:
            raise ServerError(
                "--engine openai needs --upstream URL and --model (the upstream's model id)",
                code="config_invalid",
            )
        model_arg = settings.model_path

    # The GPU gate runs before anything is measured; its effective mode is in the config event.
    settings, gpu = gpu_boot_gate(settings, clock=clock, selected=gpu_backend)
    config = measured_settings(settings, is_loopback=is_loopback, bytecode=bytecode)
    prehashed: dict[str, Event] = {}
    model_file: MemfdFile | None = None
    if settings.engine == "llama-cpp":
        assert isinstance(model_arg, Path)
        model_file = snapshot_file_to_memfd(model_arg, name="model")
        prehashed["model"] = model_file.event

    chosen = backend or select_backend(
        settings.tee, root=settings.sys_root, state_dir=settings.state_dir, clock=clock
    )
    ui = static_dir() if settings.ui_dir is None else settings.ui_dir
    ui_snapshot = snapshot_directory(ui, name="ui") if (ui / "index.html").is_file() else None
    if ui_snapshot is not None:
        prehashed["ui"] = ui_snapshot.event
    events = measure_startup(
        model=model_arg,
        settings=config,
        argv=argv,
        engine=settings.engine,
        engine_paths=settings.measure,
        ui_dir=None,
        console=console,
        prehashed=prehashed,
    )
    log = _event_log(chosen, settings.event_log)
    log.append(start_marker(count_starts(log.events())))
    for event in events:
        log.append(event)
    if gpu.event is not None:
        log.append(gpu.event)
    extended = log.events()

    if settings.tls_cert is not None:
        tls_cert_pem = settings.tls_cert.read_bytes()
    keys = ServerKeys.generate(tls_cert_pem=tls_cert_pem)
    # The model event of this start (the log may hold earlier starts' events too).
    engine = _engine(settings, model_arg, _model_event(events), model_file)
    runtime = Runtime(
        settings=settings,
        engine=engine,
        keys=keys,
        tee=chosen,
        events=extended,
        ui_measured=ui_snapshot is not None,
        collateral=_simulated_collateral(chosen),
        ui_snapshot=ui_snapshot,
        model_file=model_file,
        gpu=gpu,
    )
    report = StartupReport(
        tee=chosen.evidence_tee,
        tee_reason=chosen.reason,
        events=extended,
        rtmr3=log.rtmrs()[3],
        engine=engine.name,
        model=engine.model.id,
        gpu=gpu.status,
        gpu_reason=gpu.describe(),
    )
    return runtime, report


def measured_settings(
    settings: ServeSettings,
    *,
    is_loopback: Callable[[str], bool] = host_is_loopback,
    bytecode: BytecodeState | None = None,
) -> dict[str, object]:
    """The settings the ``cllm.config`` event records: the effective configuration, where
    prompts go (``upstream_scope``, ``upstream_host``) and the ``bytecode`` state. Refuses a
    remote upstream unless allowed (``remote_upstream_refused``)."""
    upstream = settings.upstream
    if settings.engine == "ollama" and upstream is None:
        upstream = DEFAULT_OLLAMA_UPSTREAM
    scope = classify_upstream(upstream, engine=settings.engine, is_loopback=is_loopback)
    require_local_upstream(scope, allow_remote_upstream=settings.allow_remote_upstream)
    if bytecode is None:
        bytecode = bytecode_state(measured_code_trees(settings.engine))
    return {**settings.public(), **scope.settings(), "bytecode": bytecode.mode}


def _simulated_collateral(chosen: SelectedBackend) -> Collateral | None:
    backend = chosen.backend
    return backend.world.collateral() if isinstance(backend, SimulatedTdBackend) else None


def _event_log(chosen: SelectedBackend, path: Path) -> EventLog:
    """The RTMR3 log. A simulated TD starts at zero with every process. On real TDX, RTMR3
    lives as long as the boot: a restarted server continues the log of the one before (kept
    in ``path``, on tmpfs), after checking the register holds exactly that log; anything else
    makes every later quote unverifiable, so the server refuses to start."""
    extend = rtmr3_extender(chosen.backend)
    if isinstance(chosen.backend, SimulatedTdBackend):
        return EventLog(extend)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ServerError(
            f"cannot create {path.parent} for the RTMR3 event log: {exc.strerror}",
            code="eventlog_io",
        ) from exc
    log = EventLog(extend, sink=path, resume=True)
    current = parse_quote(chosen.backend.get_quote(bytes(64))).td_report.rtmr3
    if current != log.rtmrs()[3]:
        log.close()
        raise ServerError(
            f"RTMR3 holds measurements that {path} does not explain ({len(log.events())} "
            "logged events); quotes from this boot cannot be verified: reboot the TD",
            code="rtmr3_unexplained",
        )
    return log


def _engine(
    settings: ServeSettings,
    model: Path | OllamaModel | None,
    event: Event | None,
    model_file: MemfdFile | None,
) -> Engine:
    if settings.engine == "llama-cpp":
        assert isinstance(model, Path)
        assert model_file is not None
        model_id = DEFAULT_MODEL_ID if settings.model is None else model.stem
        return LlamaCppEngine(
            model_path=model_file.path,  # the sealed copy that was hashed, not the path
            model=_model_info(model_id, event, model_file.size),
            n_ctx=settings.n_ctx,
            n_threads=settings.threads,
            stream_interval=settings.stream_interval_ms / 1000,
            max_queue=settings.max_queue,
        )
    if settings.engine == "ollama":
        assert isinstance(model, OllamaModel)
        name = f"{model.reference}:{model.tag}"
        return OllamaEngine(
            upstream=settings.upstream or DEFAULT_OLLAMA_UPSTREAM,
            model=_model_info(name, event, 0),
            upstream_model=name,
        )
    assert settings.upstream is not None
    assert settings.model is not None
    return OpenAIEngine(
        upstream=settings.upstream,
        model=_model_info(settings.model, event, 0),
        upstream_model=settings.model,
    )
