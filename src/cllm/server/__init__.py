"""``cllm serve``: the confidential inference server.

Besides the server itself (``ServeSettings``, ``build_runtime``, ``create_app``), what the
``cllm serve`` / ``cllm proxy`` launchers need before the server exists: the measured code
trees and their bytecode rule, the measured settings, the built UI directory, the TLS
certificate for ``--tls self-signed``, the effective GPU settings, the error body format.
"""

from cllm.server._app import create_app
from cllm.server._gpu import effective_gpu_settings
from cllm.server._guard import error_body
from cllm.server._runtime import Runtime
from cllm.server._scope import measured_code_trees, require_unreadable_bytecode
from cllm.server._settings import ServeSettings
from cllm.server._startup import StartupReport, build_runtime, measured_settings, static_dir
from cllm.server._tls import InMemoryTls, self_signed_tls

__all__ = [
    "InMemoryTls",
    "Runtime",
    "ServeSettings",
    "StartupReport",
    "build_runtime",
    "create_app",
    "effective_gpu_settings",
    "error_body",
    "measured_code_trees",
    "measured_settings",
    "require_unreadable_bytecode",
    "self_signed_tls",
    "static_dir",
]
