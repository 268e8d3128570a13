"""Component measurement of the configuration (``cllm.config``), secrets dropped or redacted."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Final

import rfc8785

from cllm.errors import EventLogError, MeasurementError
from cllm.measure._event import Event, freeze_json, thaw_json
from cllm.measure._plan import (
    _event,
    _fail,
)

__all__ = [
    "REDACTED",
    "SECRET_MARKERS",
    "drop_secrets",
    "is_secret_name",
    "measure_config",
    "redact_argv",
]

SECRET_MARKERS: Final = ("key", "token", "secret", "password")
REDACTED: Final = "<redacted>"


# --- Configuration -----------------------------------------------------------------------------


def is_secret_name(name: str) -> bool:
    """True when ``name`` contains ``key``, ``token``, ``secret`` or ``password`` (any case).

    Deliberately broad: a false positive (``max_tokens``) only leaves a setting unmeasured, a
    false negative would publish a secret in the event log.
    """
    lowered = name.lower()
    return any(marker in lowered for marker in SECRET_MARKERS)


def drop_secrets(settings: Mapping[str, object]) -> dict[str, object]:
    """A copy of ``settings`` without keys named like secrets (``is_secret_name``), at every
    level of nesting (objects inside objects and inside lists)."""

    def clean(value: object) -> object:
        if isinstance(value, Mapping):
            return {
                key: clean(item)
                for key, item in value.items()
                if not (isinstance(key, str) and is_secret_name(key))
            }
        if isinstance(value, list | tuple):
            return [clean(item) for item in value]
        return value

    cleaned = clean(settings)
    assert isinstance(cleaned, dict)
    return cleaned


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with the values of secret-named options replaced by ``<redacted>``.

    Handles ``--api-key=VALUE`` and ``--api-key VALUE`` (the next argument, unless it starts
    with ``-``). Secrets passed positionally or in short options cannot be recognised: pass
    secrets through the environment or files, which are not measured.
    """
    out: list[str] = []
    redact_next = False
    for arg in argv:
        if redact_next and not arg.startswith("-"):
            out.append(REDACTED)
            redact_next = False
            continue
        redact_next = False
        if arg.startswith("--"):
            option, equals, _ = arg.partition("=")
            if is_secret_name(option):
                if equals:
                    out.append(f"{option}={REDACTED}")
                    continue
                redact_next = True
        out.append(arg)
    return out


def measure_config(
    settings: Mapping[str, object], argv: Sequence[str], *, name: str = "config"
) -> Event:
    """``cllm.config``: the effective configuration and command line, in the clear.

    ``details = {"settings": settings, "argv": argv}`` and ``digest = SHA-384(JCS(details))``,
    so a verifier can recompute the digest from the log entry alone. Both are published in the
    event log: the caller passes only non-secret values (``drop_secrets``, ``redact_argv``;
    ``measure_startup`` applies both). Values must be event values (no floats, no ``None``):
    ``config_invalid`` otherwise.
    """
    if isinstance(argv, str) or not all(isinstance(arg, str) for arg in argv):
        _fail("argv must be a list of strings", "config_invalid")
    try:
        frozen = freeze_json({"settings": dict(settings), "argv": list(argv)}, depth=2)
    except EventLogError as exc:
        raise MeasurementError(f"configuration: {exc.message}", code="config_invalid") from exc
    digest = hashlib.sha384(rfc8785.dumps(thaw_json(frozen))).digest()
    assert isinstance(frozen, Mapping)
    return _event("config", name, digest, frozen)
