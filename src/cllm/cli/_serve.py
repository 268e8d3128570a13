"""``cllm serve``: the confidential inference server."""

from __future__ import annotations

import argparse
import datetime
import gc
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cllm.cli._common import EXIT_OK, print_json, report_error, require_extra, settings_error
from cllm.errors import CllmError
from cllm.measure import drop_secrets, redact_argv
from cllm.tee import default_state_dir

__all__ = ["register"]

_log = logging.getLogger(__name__)


def _api_key(value: str | None) -> SecretStr | None:
    return SecretStr(value) if value else None


def _allowed_host(text: str) -> str:
    from cllm._internal.net import normalise_host

    if normalise_host(text) is None:
        raise argparse.ArgumentTypeError(f"not a host name or IP address: {text!r}")
    return text


def _summary(console: Console, report: object, *, url: str, verifier: str | None) -> None:
    from cllm.server import StartupReport

    assert isinstance(report, StartupReport)
    table = Table(title="measured into RTMR3 (in this order)", title_justify="left")
    table.add_column("type")
    table.add_column("name")
    table.add_column("sha384", overflow="fold")
    for event in report.events:
        table.add_row(event.type, event.name, event.digest.hex()[:32] + "…")
    console.print(table)
    console.print(f"RTMR3   {report.rtmr3.hex()}")
    colour = "yellow" if report.tee == "simulated-tdx" else "green"
    console.print(f"TEE     [{colour}]{report.tee}[/{colour}] ({report.tee_reason})")
    console.print(f"GPU     {report.gpu} ({escape(report.gpu_reason)})")
    console.print(f"engine  {report.engine}, model {report.model}")
    config = next((e for e in reversed(report.events) if e.type == "cllm.config"), None)
    settings = config.details.get("settings") if config is not None else None
    if isinstance(settings, Mapping):
        where = str(settings.get("upstream_scope"))
        if where == "remote":
            where = f"[bold red]remote: {escape(str(settings.get('upstream_host')))}[/bold red]"
        console.print(f"prompts {where}; bytecode {escape(str(settings.get('bytecode')))}")
    console.print(f"verifier {verifier or '(none configured)'}")
    console.print(f"serving on [bold]{url}[/bold]")


def _attestation_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The attestation flags that were given (the rest come from CLLM_SERVE_* or defaults)."""
    given = {
        "attest_batch_max": args.attest_batch_max,
        "attest_batch_wait_ms": args.attest_batch_wait_ms,
        "attest_client_pending": args.attest_client_pending,
        "trusted_proxy_header": args.trusted_proxy_header,
    }
    return {name: value for name, value in given.items() if value is not None}


def _cmd_serve(args: argparse.Namespace, console: Console) -> int:
    try:
        # llama.cpp only for the embedded engine: the upstream engines never import it.
        engine_modules = ("llama_cpp",) if args.engine == "llama-cpp" else ()
        require_extra("server", "fastapi", "uvicorn", "pydantic_settings", *engine_modules)
    except CllmError as exc:
        return report_error(exc, as_json=False, console=console)
    from pydantic import ValidationError

    from cllm._internal.transport import effective_limits, raise_nofile_limit, run_guarded
    from cllm.server import (
        InMemoryTls,
        ServeSettings,
        build_runtime,
        create_app,
        error_body,
        measured_code_trees,
        measured_settings,
        require_unreadable_bytecode,
        self_signed_tls,
        static_dir,
    )

    tls: InMemoryTls | None = None
    try:
        settings = ServeSettings(
            host=args.host,
            port=args.port,
            engine=args.engine,
            model=args.model,
            model_path=Path(args.model_path) if args.model_path else None,
            upstream=args.upstream,
            allow_remote_upstream=args.allow_remote_upstream,
            measure=tuple(Path(p) for p in args.measure),
            ollama_models=Path(args.ollama_models) if args.ollama_models else None,
            tee=args.tee,
            sys_root=Path(args.sys_root),
            verifier=args.verifier,
            api_key=_api_key(args.api_key or os.environ.get("CLLM_API_KEY")),
            state_dir=Path(args.state_dir)
            if args.state_dir
            else default_state_dir(os.environ, Path.home()),
            tls_cert=Path(args.tls_cert) if args.tls_cert else None,
            tls_key=Path(args.tls_key) if args.tls_key else None,
            tls_self_signed=args.tls == "self-signed",
            ui_dir=Path(args.ui_dir) if args.ui_dir else None,
            threads=args.threads,
            stream_interval_ms=args.stream_interval_ms,
            gpu_backend=args.gpu_backend or os.environ.get("CLLM_GPU_BACKEND") or "auto",  # type: ignore[arg-type]
            gpu=args.gpu,
            gpu_rim_dir=Path(args.gpu_rim_dir) if args.gpu_rim_dir else None,
            gpu_ocsp=args.gpu_ocsp,
            allowed_hosts=tuple(args.allowed_host),
            default_max_tokens=args.default_max_tokens,
            max_queue=args.max_queue,
            cors_origins=tuple(args.cors_origin),
            **_attestation_settings(args),
        )
        # Before anything is measured: the measured source must be what runs.
        bytecode = require_unreadable_bytecode(measured_code_trees(settings.engine))
        argv = ["cllm", *(arg for arg in sys.argv[1:] if arg != "--print-config")]
        if args.print_config:
            from cllm.server import effective_gpu_settings

            # The GPU mode a start would settle on, so the printed configuration is the one
            # a start measures (make run signs a release of it).
            effective = effective_gpu_settings(settings, clock=time.time)
            config = measured_settings(effective, bytecode=bytecode)
            print_json({"settings": drop_secrets(config), "argv": redact_argv(argv)})
            return EXIT_OK
        limits = effective_limits(settings, nofile=raise_nofile_limit())
        if settings.tls_self_signed:
            tls = self_signed_tls(settings.host, now=datetime.datetime.now(datetime.UTC))
        runtime, report = build_runtime(
            settings,
            argv=argv,
            clock=time.time,
            tls_cert_pem=tls.cert_pem if tls else None,
            console=console,
            bytecode=bytecode,
        )
    except ValidationError as exc:
        return report_error(settings_error(exc), as_json=False, console=console)
    except CllmError as exc:
        return report_error(exc, as_json=False, console=console)
    scheme = "https" if (settings.tls_cert or tls) else "http"
    _summary(
        console,
        report,
        url=f"{scheme}://{settings.host}:{settings.port}",
        verifier=settings.verifier,
    )
    app = create_app(runtime, static_dir=settings.ui_dir or static_dir())
    # Everything built so far lives as long as the server: keep the garbage collector from
    # re-scanning it on every collection (shorter pauses, a tighter attestation latency tail).
    gc.collect()
    gc.freeze()
    try:
        run_guarded(
            app,
            limits=limits,
            refusal=lambda path: error_body(
                path,
                f"the server is at its limit of {limits.max_concurrent_requests} requests "
                "in progress; retry shortly",
                code="overloaded",
                kind="server_error",
            ),
            # Admitted per client and capped by its own queue (cllm.server._admission).
            bounded_elsewhere=frozenset({"/v1/attestation/report"}),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,  # its lines carry query strings; ours carry ids and sizes only
            ssl_certfile=tls.cert_path if tls else settings.tls_cert,
            ssl_keyfile=tls.key_path if tls else settings.tls_key,
            timeout_graceful_shutdown=5,
        )
    finally:
        if tls is not None:
            tls.close()
    return EXIT_OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="the confidential inference server (OpenAI + Ollama APIs, attestation, UI)",
        description="Measure every component into RTMR3, then serve the model with attested "
        "keys: OpenAI- and Ollama-compatible APIs, end-to-end encryption, signed answers.",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--engine",
        choices=("llama-cpp", "ollama", "openai"),
        default="llama-cpp",
        help="embedded llama.cpp (default), or proxy a local Ollama / an OpenAI-compatible server",
    )
    serve.add_argument(
        "--model",
        help="llama-cpp: PATH.gguf (default: the packaged SmolLM2-135M-Instruct); "
        "ollama: NAME[:TAG]; openai: the upstream's model id",
    )
    serve.add_argument(
        "--model-path", metavar="PATH", help="openai engine: the model's files, measured as model"
    )
    serve.add_argument("--upstream", metavar="URL", help="the Ollama or OpenAI-compatible server")
    serve.add_argument(
        "--allow-remote-upstream",
        action="store_true",
        help="forward prompts to an upstream off this machine's loopback (they leave the TD; "
        "verifiers say upstream_not_local unless their policy allows the host)",
    )
    serve.add_argument(
        "--print-config",
        action="store_true",
        help="print the configuration the cllm.config event would record (JSON for "
        "`cllm measure --config` / `cllm release create --config`) and exit",
    )
    serve.add_argument(
        "--measure",
        action="append",
        default=[],
        metavar="PATH",
        help="upstream engine files to measure (binary, environment); repeatable",
    )
    serve.add_argument("--ollama-models", metavar="DIR", help="Ollama's model store")
    serve.add_argument("--tee", choices=("auto", "tdx", "simulated"), default="auto")
    serve.add_argument("--sys-root", default="/", metavar="DIR", help=argparse.SUPPRESS)
    serve.add_argument("--verifier", metavar="URL", help="the verifier clients and the UI use")
    serve.add_argument(
        "--api-key", help="require 'Authorization: Bearer KEY' (or set CLLM_API_KEY)"
    )
    serve.add_argument("--state-dir", metavar="DIR", help="where the simulated TD lives")
    serve.add_argument("--tls-cert", metavar="PEM")
    serve.add_argument("--tls-key", metavar="PEM")
    serve.add_argument(
        "--tls", choices=("self-signed",), help="TLS with a certificate made in memory at start"
    )
    serve.add_argument("--ui-dir", metavar="DIR", help=argparse.SUPPRESS)
    serve.add_argument("--threads", type=int, metavar="N", help="llama.cpp threads (default: all)")
    serve.add_argument(
        "--stream-interval-ms",
        type=float,
        default=16.0,
        metavar="MS",
        help="llama-cpp: a token within MS of the last one sent goes with the next one "
        "(default 16, one 60 Hz frame; 0 sends every token alone)",
    )
    serve.add_argument(
        "--gpu-backend",
        choices=("auto", "nvml", "simulated", "none"),
        help="where GPU evidence comes from (default: $CLLM_GPU_BACKEND, else auto: nvml when "
        "NVIDIA GPUs are visible, else none)",
    )
    serve.add_argument(
        "--gpu",
        choices=("required", "optional", "off"),
        help="attested GPUs required before listening (default: required when the backend "
        "finds GPUs, off when it finds none); optional starts with unattested GPUs and says so",
    )
    serve.add_argument(
        "--gpu-rim-dir", metavar="DIR", help="driver/VBIOS RIMs named by RIM id (air-gapped)"
    )
    serve.add_argument(
        "--gpu-ocsp",
        choices=("require", "allow-unknown", "off"),
        default="require",
        help="GPU certificate revocation policy at boot (default: require)",
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        type=_allowed_host,
        metavar="NAME",
        help="answer only requests whose Host is NAME (or under *.DOMAIN); repeatable; "
        "default: any (a guard against DNS rebinding, see docs/server.md)",
    )
    serve.add_argument(
        "--default-max-tokens",
        type=int,
        default=1024,
        metavar="N",
        help="the answer cap of a request that sets none (default 1024)",
    )
    serve.add_argument(
        "--max-queue",
        type=int,
        default=16,
        metavar="N",
        help="llama-cpp: requests that may wait for the engine; more get 429 (default 16)",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser pages from ORIGIN (e.g. https://chat.example.com) to call the "
        "APIs; repeatable; default none",
    )
    serve.add_argument(
        "--attest-batch-max",
        type=int,
        metavar="N",
        help="nonces answered by one quote, at most (default 1024; 1: one quote per nonce)",
    )
    serve.add_argument(
        "--attest-batch-wait-ms",
        type=float,
        metavar="MS",
        help="how long a batch waits for more nonces once the quote slot is free (default 2)",
    )
    serve.add_argument(
        "--attest-client-pending",
        type=int,
        metavar="N",
        help="attestation requests one client may have pending before 429 (default 4)",
    )
    serve.add_argument(
        "--trusted-proxy-header",
        metavar="NAME",
        help="count attestation clients by this header's last address (e.g. X-Forwarded-For), "
        "set by a reverse proxy you run; only then",
    )
    serve.set_defaults(handler=_cmd_serve)
