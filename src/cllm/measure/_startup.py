"""The start-up measurement: the components ``cllm serve`` extends into RTMR3 before it
listens, in a fixed order (``measure_startup``)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from rich.console import Console

from cllm.errors import MeasurementError
from cllm.measure._config import drop_secrets, measure_config, redact_argv
from cllm.measure._distribution import _plan_distribution
from cllm.measure._event import EVENT_TYPE_PREFIX, Event
from cllm.measure._files import (
    _plan_directory,
    _plan_file,
)
from cllm.measure._hashing import (
    FileDigests,
    ProgressCallback,
    ProgressDisplay,
)
from cllm.measure._ollama import OllamaModel, _plan_ollama
from cllm.measure._plan import (
    PathArg,
    _event,
    _fail,
    _Plan,
    _run,
)

__all__ = ["CLLM_DISTRIBUTION", "ENGINES", "LLAMA_CPP_DISTRIBUTION", "measure_startup"]

_log = logging.getLogger(__name__)

CLLM_DISTRIBUTION: Final = "confidential-llm"
LLAMA_CPP_DISTRIBUTION: Final = "llama-cpp-python"
ENGINES: Final = ("llama-cpp", "ollama", "openai")


# --- Start-up measurement ----------------------------------------------------------------------


def _covers_import(plan: _Plan, module: str) -> None:
    """The code Python will import for ``module`` must be among the files measured."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise MeasurementError(
            f"cannot locate module {module!r}", code="package_not_measured"
        ) from exc
    origin = spec.origin if spec is not None else None
    if origin is None or os.path.realpath(origin) not in plan.covers:
        _fail(
            f"module {module!r} is imported from {origin}, which was not measured",
            "package_not_measured",
        )


def _plan_path(path: PathArg, *, name: str, allow_external_links: bool) -> _Plan:
    if Path(path).is_dir():
        return _plan_directory(path, name=name, allow_external_links=allow_external_links)
    return _plan_file(path, name=name)


_ROLE_KINDS: Final = {
    "cllm": "package",
    "engine": "engine",
    "model": "model",
    "ui": "ui",
    "config": "config",
}


def _as_component(event: Event) -> Event:
    """Retype a measurement as the startup component it is (docs/design.md §4): ``type`` is
    ``cllm.<kind>`` of the component (package, engine, model, ui, config), which policies and
    tokens match on; ``name`` says which one; ``details.method`` says how it was measured."""
    kind = _ROLE_KINDS[event.name]
    method = event.type.removeprefix(EVENT_TYPE_PREFIX)
    details = dict(event.details)
    if "distribution" in details:
        name = str(details["distribution"])
    elif "model" in details and "tag" in details:
        name = f"{details['model']}:{details['tag']}"
    elif "path" in details and kind != "ui":
        name = Path(str(details["path"])).name or str(details["path"])
    else:
        name = event.name
    return _event(kind, name, event.digest, {"method": method, **details})


def _given_plan(event: Event) -> _Plan:
    """A component already measured from bytes kept in hand: nothing left to hash."""

    def finish(_: Sequence[FileDigests]) -> Event:
        return event

    return _Plan((), finish)


def measure_startup(
    *,
    model: PathArg | OllamaModel | None,
    settings: Mapping[str, object],
    argv: Sequence[str],
    engine: str = "llama-cpp",
    engine_paths: Sequence[PathArg] = (),
    ui_dir: PathArg | None = None,
    allow_external_links: bool = False,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    console: Console | None = None,
    show_progress: bool = True,
    prehashed: Mapping[str, Event] | None = None,
) -> tuple[Event, ...]:
    """The events ``cllm serve`` extends into RTMR3 before it listens, in this fixed order:

    Each event's ``type`` is ``cllm.<kind>`` of the component: ``package``, ``engine``,
    ``model``, ``ui``, ``config``; ``details.method`` says how it was measured (``file``,
    ``directory``, ``distribution``, ``ollama_model``, ``config``).

    1. ``cllm``: the distribution ``confidential-llm`` (``cllm.package``);
    2. ``engine``: for ``llama-cpp`` the distribution ``llama-cpp-python`` (missing:
       ``engine_not_installed``), then one event per ``engine_paths`` entry (``--measure``:
       file or directory). Upstream engines (``ollama``, ``openai``) need at least one path,
       else ``engine_unmeasured``: an unmeasured engine must not look measured;
    3. ``model``: a file (GGUF), a directory (e.g. safetensors), or an ``OllamaModel``; only
       the ``openai`` engine may pass ``None`` (its weights then among ``engine_paths``), else
       ``model_unmeasured``;
    4. ``ui``: the built UI assets directory, only when ``ui_dir`` is given and exists (the
       server must serve a UI only if this event is present);
    5. ``config``: ``drop_secrets(settings)`` and ``redact_argv(argv)``.

    For the two packages, the code Python imports (``cllm``, ``llama_cpp``) must be among the
    measured files (``package_not_measured``). Installer-compiled bytecode is not measured
    (see ``measure_distribution``): run the server with ``PYTHONPYCACHEPREFIX`` pointing at a
    fresh directory so ``__pycache__`` directories on disk are never read.

    ``prehashed`` gives the raw events of roles already measured from bytes kept in hand
    (``"model"``, ``"ui"``: see ``cllm.measure._snapshot``); they replace measuring the path.

    All files are hashed in one thread pool (``workers``). A progress bar appears on
    ``console`` (default stderr) if hashing takes over a second and ``show_progress`` is set
    and the console is a terminal; ``progress`` receives byte counts either way.
    """
    if engine not in ENGINES:
        _fail(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}", "engine_unknown")
    plans: list[_Plan] = []
    cllm_plan = _plan_distribution(CLLM_DISTRIBUTION, name="cllm")
    _covers_import(cllm_plan, "cllm")
    plans.append(cllm_plan)
    if engine == "llama-cpp":
        try:
            importlib.metadata.distribution(LLAMA_CPP_DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            _fail(
                f"engine llama-cpp needs the {LLAMA_CPP_DISTRIBUTION} distribution, which is "
                "not installed",
                "engine_not_installed",
            )
        engine_plan = _plan_distribution(LLAMA_CPP_DISTRIBUTION, name="engine")
        _covers_import(engine_plan, "llama_cpp")
        plans.append(engine_plan)
    elif not engine_paths:
        _fail(
            f"engine {engine} runs outside cllm: name its files with --measure PATH",
            "engine_unmeasured",
        )
    for path in engine_paths:
        plans.append(_plan_path(path, name="engine", allow_external_links=allow_external_links))
    given = dict(prehashed or {})
    for role, event in given.items():
        if role not in ("model", "ui") or event.name != role:
            raise ValueError(f"prehashed events are the raw 'model' and 'ui' ones, not {role!r}")
    if "model" in given:
        plans.append(_given_plan(given["model"]))
    elif model is None:
        if engine != "openai":
            _fail(f"engine {engine} needs its model measured", "model_unmeasured")
    elif isinstance(model, OllamaModel):
        plans.append(_plan_ollama(model, name="model"))
    else:
        plans.append(_plan_path(model, name="model", allow_external_links=allow_external_links))
    if "ui" in given:
        plans.append(_given_plan(given["ui"]))
    elif ui_dir is not None and Path(ui_dir).is_dir():
        plans.append(_plan_directory(ui_dir, name="ui", allow_external_links=False))
    elif ui_dir is not None:
        _log.info("no UI assets at %s: not measured, the UI must not be served", ui_dir)
    config = measure_config(drop_secrets(settings), redact_argv(argv))
    with ProgressDisplay(console=console, enabled=show_progress, callback=progress) as display:
        events = [_as_component(event) for event in _run(plans, workers=workers, progress=display)]
    events.append(_as_component(config))
    for event in events:
        _log.info("measured %s (%s): %s", event.name, event.type, event.digest.hex()[:16])
    return tuple(events)
