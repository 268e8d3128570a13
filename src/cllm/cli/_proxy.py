"""``cllm proxy URL --listen 127.0.0.1:PORT [cllm verify's verification flags]``: the local
attested gateway (cllm.proxy)."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Final

from rich.console import Console
from rich.text import Text

from cllm.cli._common import EXIT_OK, report_error, require_extra
from cllm.cli._text import outside_text
from cllm.errors import CllmError

__all__ = ["register"]

DEFAULT_LISTEN: Final = "127.0.0.1:8787"
_COLOURS: Final = {"affirming": "green", "warning": "yellow", "contraindicated": "red"}


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``PORT`` (on 127.0.0.1)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CllmError(f"--listen {value!r}: expected HOST:PORT", code="usage")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise CllmError(
                f"--listen {value!r}: give an IP address (or localhost)", code="usage"
            ) from None
    return host, int(port)


def exposure_warning(host: str) -> str | None:
    """What to say, loudly, when the proxy would listen beyond this machine."""
    from cllm._internal.net import is_loopback_host

    if is_loopback_host(host):
        return None
    return (
        f"WARNING: listening on {host}, not on loopback: anyone who can reach this address can "
        "use your verified session, send prompts in your name and read the answers in "
        "plaintext. Use 127.0.0.1 unless you mean exactly that."
    )


def _cmd_proxy(args: argparse.Namespace, console: Console) -> int:
    try:
        require_extra("proxy", "starlette", "uvicorn")
    except CllmError as exc:
        return report_error(exc, as_json=False, console=console)
    import uvicorn

    from cllm.cli._client import _verifier
    from cllm.client import AttestedSession
    from cllm.proxy import ProxySettings, create_proxy_app
    from cllm.server import static_dir

    err = Console(stderr=True)
    try:
        host, port = parse_listen(args.listen)
        verifier = _verifier(args)
    except CllmError as exc:
        return report_error(exc, as_json=False, console=err)
    settings = ProxySettings(
        upstream=args.url.rstrip("/"),
        listen_host=host,
        listen_port=port,
        api_key=args.api_key,
        static_dir=None if args.no_ui else static_dir(),
    )
    session = AttestedSession(settings.upstream, verifier, allow_warning=not args.strict)
    app, _ = create_proxy_app(settings, session)

    warning = exposure_warning(host)
    if warning is not None:
        err.print(Text(warning, style="bold red"))
    result = session.current()  # attest before the first request, and show the verdict
    colour = _COLOURS[result.status]
    line = Text("verdict  ") + Text(result.status.upper(), style=f"bold {colour}")
    if result.simulated:
        line.append("  (simulated TD: not hardware evidence)", style="yellow")
    err.print(Text("server   ") + outside_text(settings.upstream))
    err.print(Text("verifier ") + outside_text(result.verifier))
    if result.verifier_key:
        err.print(Text("verifier key ") + outside_text(result.verifier_key))
    if args.verifier and not args.verifier_key:
        err.print(
            Text(
                "the verifier's key is not pinned: pin it with --verifier-key or `cllm trust "
                "add URL --verifier ...`, or a look-alike at that address decides the verdict",
                style="yellow",
            )
        )
    for reason in result.reasons:
        err.print(outside_text(f"  - {reason.code}: {reason.message}", style=colour))
    err.print(line)
    if not result.permits(allow_warning=not args.strict):
        err.print(
            Text(
                "requests will get errors (nothing is forwarded) until the server verifies; "
                "it is checked again on every request",
                style="red",
            )
        )
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    err.print(Text(f'OpenAI API  {base}/v1   (openai.OpenAI(base_url="{base}/v1"))'))
    err.print(Text(f'Ollama API  {base}      (ollama.Client(host="{base}"))'))
    if settings.static_dir is not None and (settings.static_dir / "index.html").is_file():
        err.print(Text(f"web UI      {base}/"))
    err.print(Text(f"verdict     {base}/cllm/status"))
    sys.stderr.flush()
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    except OSError as exc:
        return report_error(
            CllmError(f"cannot listen on {args.listen}: {exc.strerror}", code="listen_failed"),
            as_json=False,
            console=err,
        )
    return EXIT_OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from cllm.cli._client import _add_verification_flags

    proxy = commands.add_parser(
        "proxy",
        help="a local gateway: verify a cllm server, then offer its OpenAI and Ollama APIs "
        "and the web UI on this machine, end-to-end encrypted",
        description="Verifies the server (before the first request, again when the verdict "
        "expires, when the server's keys change or a request fails), seals every request to "
        "the attested key and checks every answer's signature. Point any OpenAI or Ollama "
        "client at the listen address; GET /cllm/status shows the verdict (as cllm verify "
        "--json). Nothing is forwarded to a server that does not verify. Exit 2 on usage "
        "errors.",
    )
    _add_verification_flags(proxy)
    proxy.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"where to listen (default {DEFAULT_LISTEN}; other than loopback: warned loudly)",
    )
    proxy.add_argument("--api-key", help="the server's API key, sent when a client sends none")
    proxy.add_argument("--no-ui", action="store_true", help="do not serve the web UI at /")
    proxy.set_defaults(handler=_cmd_proxy)
