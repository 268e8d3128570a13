"""Measurement: cllm events and their event log, RTMR replay, component measurement, and the
firmware (CCEL, TCG crypto-agile) and dstack event logs.

docs/design.md §4. An event is ``{"rtmr", "type", "name", "digest": {"sha384"}, "details"}``;
the value extended into the RTMR is SHA-384 of its RFC 8785 canonical JSON, and the log holds
exactly the hashed objects, so anyone can replay it.
"""

from cllm._internal.jcs import canonical_json
from cllm.measure._ccel import (
    CC_TYPE_TDX,
    EV_NO_ACTION,
    TPM_ALG_SHA384,
    CcelTable,
    SpecIdEvent,
    TcgEvent,
    TcgEventLog,
    build_ccel,
    parse_ccel,
    parse_ccel_table,
    parse_tcg_event_log,
    replay_ccel,
)
from cllm.measure._config import (
    SECRET_MARKERS,
    drop_secrets,
    is_secret_name,
    measure_config,
    redact_argv,
)
from cllm.measure._distribution import measure_distribution
from cllm.measure._dstack import (
    DSTACK_RUNTIME_EVENT_TYPE,
    DstackEvent,
    check_runtime_event,
    parse_dstack_event_log,
    replay_dstack,
    runtime_event_digest,
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
from cllm.measure._files import measure_directory, measure_file
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
from cllm.measure._ollama import OllamaModel, measure_ollama_model
from cllm.measure._plan import MEASURED_RTMR, PathArg
from cllm.measure._registers import Rtmrs, replay_digests
from cllm.measure._rtmr import RTMR_COUNT, RTMR_SIZE, ZERO_RTMR, extend
from cllm.measure._snapshot import (
    DirectorySnapshot,
    MemfdFile,
    snapshot_directory,
    snapshot_file_to_memfd,
)
from cllm.measure._start import START_EVENT_TYPE, count_starts, start_marker
from cllm.measure._startup import (
    CLLM_DISTRIBUTION,
    ENGINES,
    LLAMA_CPP_DISTRIBUTION,
    measure_startup,
)

__all__ = [
    "CC_TYPE_TDX",
    "CHUNK_SIZE",
    "CLLM_DISTRIBUTION",
    "DSTACK_RUNTIME_EVENT_TYPE",
    "ENGINES",
    "EVENT_TYPE_PREFIX",
    "EV_NO_ACTION",
    "LLAMA_CPP_DISTRIBUTION",
    "MAX_DEPTH",
    "MAX_EVENTS",
    "MAX_EVENT_BYTES",
    "MAX_LOG_TEXT",
    "MAX_NAME",
    "MEASURED_RTMR",
    "RTMR_COUNT",
    "RTMR_SIZE",
    "SECRET_MARKERS",
    "START_EVENT_TYPE",
    "TPM_ALG_SHA384",
    "ZERO_RTMR",
    "CcelTable",
    "DirectorySnapshot",
    "DstackEvent",
    "Event",
    "EventLog",
    "ExtendFn",
    "FileDigests",
    "FrozenJson",
    "HashRequest",
    "JsonValue",
    "MemfdFile",
    "OllamaModel",
    "PathArg",
    "ProgressCallback",
    "ProgressDisplay",
    "Rtmrs",
    "SpecIdEvent",
    "TcgEvent",
    "TcgEventLog",
    "build_ccel",
    "canonical_json",
    "check_runtime_event",
    "count_starts",
    "drop_secrets",
    "extend",
    "hash_file",
    "hash_files",
    "is_secret_name",
    "measure_config",
    "measure_directory",
    "measure_distribution",
    "measure_file",
    "measure_ollama_model",
    "measure_startup",
    "parse_ccel",
    "parse_ccel_table",
    "parse_dstack_event_log",
    "parse_event_log",
    "parse_tcg_event_log",
    "redact_argv",
    "replay",
    "replay_ccel",
    "replay_digests",
    "replay_dstack",
    "runtime_event_digest",
    "snapshot_directory",
    "snapshot_file_to_memfd",
    "start_marker",
]
