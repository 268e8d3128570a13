"""Measurement: cllm events and their event log, RTMR replay, component measurement, and the
firmware (CCEL, TCG crypto-agile) and dstack event logs.

docs/design.md §4. An event is ``{"rtmr", "type", "name", "digest": {"sha384"}, "details"}``;
the value extended into the RTMR is SHA-384 of its RFC 8785 canonical JSON, and the log holds
exactly the hashed objects, so anyone can replay it.
"""

from cllm._internal.jcs import canonical_json
from cllm.measure._ccel import EV_NO_ACTION, TcgEvent, build_ccel, parse_tcg_event_log, replay_ccel
from cllm.measure._config import drop_secrets, measure_config, redact_argv
from cllm.measure._distribution import measure_distribution
from cllm.measure._dstack import parse_dstack_event_log, replay_dstack
from cllm.measure._event import MAX_DEPTH, Event, parse_event_log, replay
from cllm.measure._files import measure_directory, measure_file
from cllm.measure._hashing import hash_file, hash_files
from cllm.measure._log import EventLog
from cllm.measure._ollama import OllamaModel, measure_ollama_model
from cllm.measure._plan import MEASURED_RTMR
from cllm.measure._registers import Rtmrs
from cllm.measure._rtmr import RTMR_SIZE, ZERO_RTMR, extend
from cllm.measure._snapshot import (
    DirectorySnapshot,
    MemfdFile,
    snapshot_directory,
    snapshot_file_to_memfd,
)
from cllm.measure._start import START_EVENT_TYPE, count_starts, start_marker
from cllm.measure._startup import CLLM_DISTRIBUTION, ENGINES, measure_startup

__all__ = [
    "CLLM_DISTRIBUTION",
    "ENGINES",
    "EV_NO_ACTION",
    "MAX_DEPTH",
    "MEASURED_RTMR",
    "RTMR_SIZE",
    "START_EVENT_TYPE",
    "ZERO_RTMR",
    "DirectorySnapshot",
    "Event",
    "EventLog",
    "MemfdFile",
    "OllamaModel",
    "Rtmrs",
    "TcgEvent",
    "build_ccel",
    "canonical_json",
    "count_starts",
    "drop_secrets",
    "extend",
    "hash_file",
    "hash_files",
    "measure_config",
    "measure_directory",
    "measure_distribution",
    "measure_file",
    "measure_ollama_model",
    "measure_startup",
    "parse_dstack_event_log",
    "parse_event_log",
    "parse_tcg_event_log",
    "redact_argv",
    "replay",
    "replay_ccel",
    "replay_dstack",
    "snapshot_directory",
    "snapshot_file_to_memfd",
    "start_marker",
]
