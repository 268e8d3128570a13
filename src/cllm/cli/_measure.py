"""``cllm measure`` and ``cllm eventlog replay``: reference values and log replay, offline."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console

from cllm.cli._common import EXIT_OK, print_json, read_file, report_error
from cllm.engine import default_model_path
from cllm.errors import CllmError, EventLogError, MeasurementError
from cllm.measure import (
    ENGINES,
    Event,
    OllamaModel,
    Rtmrs,
    measure_startup,
    parse_dstack_event_log,
    parse_event_log,
    parse_tcg_event_log,
    replay,
    replay_ccel,
    replay_dstack,
    start_marker,
)

__all__ = ["add_measure_inputs", "measure_events", "register", "replay_file"]


def _ollama_root() -> Path:
    configured = os.environ.get("OLLAMA_MODELS")
    return Path(configured) if configured else Path.home() / ".ollama" / "models"


def _load_config(path: str | None) -> tuple[dict[str, Any], list[str]]:
    """``--config FILE``: ``{"settings": {...}, "argv": [...]}`` (the details of the config
    event ``cllm serve`` logs), or a plain settings object with no command line."""
    if path is None:
        return {}, []
    try:
        doc = json.loads(read_file(path, "config"))
    except ValueError as exc:
        raise MeasurementError(f"{path} is not JSON: {exc}", code="config_invalid") from exc
    if not isinstance(doc, dict):
        raise MeasurementError(f"{path} must hold a JSON object", code="config_invalid")
    if set(doc) <= {"settings", "argv", "method"} and "settings" in doc:
        settings, argv = doc["settings"], doc.get("argv", [])
        if not isinstance(settings, dict) or not isinstance(argv, list):
            raise MeasurementError("settings must be an object, argv a list", code="config_invalid")
        return settings, [str(arg) for arg in argv]
    return doc, []


def measure_events(args: argparse.Namespace, *, show_progress: bool) -> tuple[Event, ...]:
    """What a fresh ``cllm serve`` with these inputs extends, start marker first."""
    settings, argv = _load_config(args.config)
    model: Path | OllamaModel | None
    if args.engine == "ollama":
        if not args.model:
            raise MeasurementError("--engine ollama needs --model NAME[:TAG]", code="model_missing")
        model = OllamaModel.parse(args.model, root=Path(args.ollama_models or _ollama_root()))
    elif args.engine == "openai":
        # As `cllm serve --model-path`: the upstream's weights, when they are measured.
        model = Path(args.model) if args.model else None
    else:
        model = Path(args.model) if args.model else default_model_path()
    events = measure_startup(
        model=model,
        settings=settings,
        argv=argv,
        engine=args.engine,
        engine_paths=[Path(path) for path in args.measure],
        ui_dir=Path(args.ui) if args.ui else None,
        show_progress=show_progress,
        console=Console(stderr=True),
    )
    return (start_marker(0), *events)


def _cmd_measure(args: argparse.Namespace, console: Console) -> int:
    try:
        events = measure_events(args, show_progress=not args.json)
    except CllmError as exc:
        return report_error(exc, as_json=args.json, console=console)
    rtmr3 = replay(events)[3].hex()
    if args.json:
        print_json({"events": [event.to_json() for event in events], "rtmr3": rtmr3})
        return EXIT_OK
    for event in events:
        console.print(f"[bold]{event.type}[/bold] {event.name} sha384:{event.digest.hex()}")
    console.print(f"RTMR3 {rtmr3}")
    return EXIT_OK


def _cllm_events_of(doc: object) -> object:
    """The events of a ``cllm measure --json`` output or an evidence document, else ``doc``."""
    if isinstance(doc, dict):
        for key in ("events", "event_log"):
            if key in doc:
                return doc[key]
    return doc


def _detect_format(raw: bytes) -> str:
    head = raw.lstrip()[:1]
    if head not in (b"[", b"{"):
        return "ccel"
    try:
        doc = json.loads(raw)
    except ValueError:
        return "cllm"  # JSON Lines
    events = _cllm_events_of(doc)
    if isinstance(events, str):
        return "dstack"  # dstack documents may embed the log as a JSON string
    first = events[0] if isinstance(events, list) and events else None
    if isinstance(first, dict) and "imr" in first:
        return "dstack"
    return "cllm"


def replay_file(
    raw: bytes, *, log_format: str, ccel_table: bytes | None, recompute_stripped: bool
) -> Rtmrs:
    """Replay a log file of any supported format to RTMR0..RTMR3 (untouched ones are zero)."""
    if log_format == "auto":
        log_format = _detect_format(raw)
    if log_format == "ccel":
        if ccel_table is not None:
            return replay_ccel(ccel_table, raw)
        return parse_tcg_event_log(raw).replay()
    if log_format == "dstack":
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise EventLogError(f"not JSON: {exc}", code="eventlog_bad_json") from exc
        if isinstance(doc, dict):
            if "event_log" not in doc:
                raise EventLogError("no event_log field", code="eventlog_malformed")
            doc = doc["event_log"]
        dstack_events = parse_dstack_event_log(doc)
        return replay_dstack(dstack_events, recompute_stripped=recompute_stripped)
    try:
        whole = json.loads(raw) if raw.lstrip()[:1] == b"{" else None
    except ValueError:
        whole = None  # JSON Lines: one event object per line
    if isinstance(whole, dict):
        listed = _cllm_events_of(whole)
        if listed is whole:  # JSON Lines holding a single event
            listed = [whole]
        if not isinstance(listed, list):
            raise EventLogError("no list of events in the document", code="eventlog_malformed")
        return Rtmrs.from_sequence(replay(parse_event_log(listed)))
    return Rtmrs.from_sequence(replay(parse_event_log(raw)))


def _cmd_replay(args: argparse.Namespace, console: Console) -> int:
    try:
        raw = read_file(args.file, "event log")
        table = read_file(args.ccel_table, "CCEL table") if args.ccel_table else None
        registers = replay_file(
            raw,
            log_format=args.format,
            ccel_table=table,
            recompute_stripped=args.recompute_stripped,
        )
    except CllmError as exc:
        return report_error(exc, as_json=args.json, console=console)
    if args.json:
        print_json(registers.as_hex())
    else:
        for name, value in registers.as_hex().items():
            console.print(f"{name.upper()} {value}")
    return EXIT_OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    measure = commands.add_parser(
        "measure",
        help="compute the events and RTMR3 `cllm serve` extends, offline (reference values)",
    )
    add_measure_inputs(measure)
    measure.add_argument("--json", action="store_true", help="machine-readable output")
    measure.set_defaults(handler=_cmd_measure)
    _register_eventlog(commands)


def add_measure_inputs(measure: argparse.ArgumentParser) -> None:
    """The inputs of ``cllm measure`` (also ``cllm release create``'s)."""
    measure.add_argument(
        "--model",
        metavar="PATH",
        help="GGUF file (default: the bundled SmolLM2); --engine ollama: NAME[:TAG]; "
        "--engine openai: the weights (cllm serve --model-path), if measured",
    )
    measure.add_argument("--engine", choices=sorted(ENGINES), default="llama-cpp")
    measure.add_argument(
        "--measure",
        action="append",
        default=[],
        metavar="PATH",
        help="a file or directory of an upstream engine to measure (repeatable)",
    )
    measure.add_argument(
        "--config",
        metavar="FILE",
        help='JSON {"settings": {...}, "argv": [...]}: the configuration `cllm serve` measures',
    )
    measure.add_argument("--ui", metavar="DIR", help="built UI assets directory to measure")
    measure.add_argument("--ollama-models", metavar="DIR", help="Ollama models directory")


def _register_eventlog(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    eventlog = commands.add_parser("eventlog", help="event logs: replay to RTMR values")
    actions = eventlog.add_subparsers(dest="eventlog_command", metavar="ACTION", required=True)
    replay_cmd = actions.add_parser("replay", help="replay an event log to RTMR0..RTMR3")
    replay_cmd.add_argument("file", metavar="FILE")
    replay_cmd.add_argument(
        "--format",
        choices=["auto", "cllm", "ccel", "dstack"],
        default="auto",
        help="cllm events (a JSON list, JSON Lines, `cllm measure` output or an evidence "
        "document), CCEL log data (TCG crypto-agile), or dstack JSON",
    )
    replay_cmd.add_argument("--ccel-table", metavar="FILE", help="the ACPI CCEL table (ccel)")
    replay_cmd.add_argument(
        "--recompute-stripped",
        action="store_true",
        help="dstack lite logs: extend runtime events whose digest the log leaves out",
    )
    replay_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    replay_cmd.set_defaults(handler=_cmd_replay)
