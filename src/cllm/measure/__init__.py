"""Measurement: cllm events and their event log, RTMR replay, component measurement.

DESIGN.md section 4. An event is ``{"rtmr", "type", "name", "digest": {"sha384"}, "details"}``;
the value extended into the RTMR is SHA-384 of its RFC 8785 canonical JSON, and the log holds
exactly the hashed objects, so anyone can replay it.
"""

from cllm.measure._components import (
    CLLM_DISTRIBUTION,
    ENGINES,
    LLAMA_CPP_DISTRIBUTION,
    MEASURED_RTMR,
    SECRET_MARKERS,
    OllamaModel,
    PathArg,
    drop_secrets,
    is_secret_name,
    measure_config,
    measure_directory,
    measure_distribution,
    measure_file,
    measure_ollama_model,
    measure_startup,
    redact_argv,
)
from cllm.measure._event import (
    EVENT_TYPE_PREFIX,
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    MAX_EVENTS,
    MAX_LOG_TEXT,
    MAX_NAME,
    Event,
    FrozenJson,
    JsonValue,
    parse_event_log,
    replay,
)
from cllm.measure._hashing import (
    CHUNK_SIZE,
    FileDigests,
    HashRequest,
    ProgressCallback,
    ProgressDisplay,
    hash_file,
    hash_files,
)
from cllm.measure._log import EventLog, ExtendFn

__all__ = [
    "CHUNK_SIZE",
    "CLLM_DISTRIBUTION",
    "ENGINES",
    "EVENT_TYPE_PREFIX",
    "LLAMA_CPP_DISTRIBUTION",
    "MAX_DEPTH",
    "MAX_EVENTS",
    "MAX_EVENT_BYTES",
    "MAX_LOG_TEXT",
    "MAX_NAME",
    "MEASURED_RTMR",
    "SECRET_MARKERS",
    "Event",
    "EventLog",
    "ExtendFn",
    "FileDigests",
    "FrozenJson",
    "HashRequest",
    "JsonValue",
    "OllamaModel",
    "PathArg",
    "ProgressCallback",
    "ProgressDisplay",
    "drop_secrets",
    "hash_file",
    "hash_files",
    "is_secret_name",
    "measure_config",
    "measure_directory",
    "measure_distribution",
    "measure_file",
    "measure_ollama_model",
    "measure_startup",
    "parse_event_log",
    "redact_argv",
    "replay",
]
