"""``cllm serve``: the confidential inference server."""

from cllm.server._admission import AdmissionSettings
from cllm.server._app import create_app
from cllm.server._keys import ServerKeys
from cllm.server._runtime import Runtime
from cllm.server._settings import EngineName, ServeSettings
from cllm.server._startup import StartupReport, build_runtime

__all__ = [
    "AdmissionSettings",
    "EngineName",
    "Runtime",
    "ServeSettings",
    "ServerKeys",
    "StartupReport",
    "build_runtime",
    "create_app",
]
