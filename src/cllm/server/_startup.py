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
from cllm.gpu._select import SelectedGpuBackend
from cllm.measure import Event, EventLog, OllamaModel, measure_startup
from cllm.quote import parse_quote
from cllm.server._gpu import gpu_boot_gate
from cllm.server._keys import ServerKeys, check_tls_pair
from cllm.server._runtime import Runtime
from cllm.server._settings import ServeSettings
from cllm.tee import SelectedBackend, SimulatedTdBackend, rtmr3_extender, select_backend
from cllm.verify import Collateral

__all__ = ["DEFAULT_OLLAMA_UPSTREAM", "StartupReport", "build_runtime", "static_dir"]

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
    gpu_backend: SelectedGpuBackend | None = None,
) -> tuple[Runtime, StartupReport]:
    """Everything ``cllm serve`` does before it listens. Raises ``CllmError`` subclasses with
    codes (``model_not_found``, ``engine_unmeasured``, ``tsm_unavailable``, ...).
    ``tls_cert_pem`` is the in-memory certificate of ``--tls self-signed``; with
    ``--tls-cert`` the file is read instead. Its SPKI hash goes into every binding.
    ``backend`` replaces ``select_backend`` (tests inject a TD whose RTMR3 survives a
    "restart")."""
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

    chosen = backend or select_backend(
        settings.tee, root=settings.sys_root, state_dir=settings.state_dir, clock=clock
    )
    # The GPU gate runs before anything is measured; its effective mode is in the config event.
    settings, gpu = gpu_boot_gate(settings, clock=clock, selected=gpu_backend)
    ui = static_dir() if settings.ui_dir is None else settings.ui_dir
    events = measure_startup(
        model=model_arg,
        settings=settings.public(),
        argv=argv,
        engine=settings.engine,
        engine_paths=settings.measure,
        ui_dir=ui if (ui / "index.html").is_file() else None,
        console=console,
    )
    log = _event_log(chosen, settings.event_log)
    for event in events:
        log.append(event)
    if gpu.event is not None:
        log.append(gpu.event)
    extended = log.events()

    if settings.tls_cert is not None:
        tls_cert_pem = settings.tls_cert.read_bytes()
    keys = ServerKeys.generate(tls_cert_pem=tls_cert_pem)
    engine = _engine(settings, model_arg, _model_event(extended))
    runtime = Runtime(
        settings=settings,
        engine=engine,
        keys=keys,
        tee=chosen,
        events=extended,
        ui_measured=any(e.type == "cllm.ui" for e in extended),
        collateral=_simulated_collateral(chosen),
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
    settings: ServeSettings, model: Path | OllamaModel | None, event: Event | None
) -> Engine:
    if settings.engine == "llama-cpp":
        assert isinstance(model, Path)
        model_id = DEFAULT_MODEL_ID if settings.model is None else model.stem
        return LlamaCppEngine(
            model_path=model,
            model=_model_info(model_id, event, model.stat().st_size),
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
