"""Host names as the server, the proxy and the client judge them."""

from __future__ import annotations

import ipaddress
import re

__all__ = ["is_loopback_host", "normalise_host"]

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_NAME = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1): traffic to them
    never leaves this machine. Any other name could resolve anywhere."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalise_host(value: str) -> str | None:
    """An allowed-host entry or a ``Host`` header's host part, lower case, without port,
    IPv6 brackets or trailing dot; ``None`` when it is not a host name or an IP address.
    ``*.example.org`` (entries only) stands for every name under example.org."""
    text = value.strip().lower()
    if text.startswith("["):
        inner, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not re.fullmatch(r":\d{1,5}", rest)):
            return None
        text = inner
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not re.fullmatch(r"\d{1,5}", port):
            return None
    text = text.removesuffix(".")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    return text if len(text) <= 253 and _NAME.match(text) else None
