"""May the client use the keys a verdict names? One rule, here, for every Python caller
(``Verification.permits``, ``LocalVerifier``, ``RemoteVerifier``, ``AttestedSession``, the CLI,
the proxy); the UI's ``ui/src/permit.js`` follows the same table, and both are checked against
the shared vectors in ``tests/appraisal/permit_vectors.json``.

In order, the first that applies refuses:

1. ``verdict_expired``: the verdict is past its lifetime (it vouches for nothing now);
2. ``attestation_failed``: the status is not one of the three, or ``contraindicated``;
3. ``attestation_failed``: the verdict names no keys (nothing to pin);
4. ``attestation_warning``: ``warning`` while the caller does not allow warnings.

Otherwise permitted: ``affirming``, or ``warning`` when allowed, with keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from cllm.policy import Status

__all__ = ["Permit", "permits"]

_STATUSES = frozenset(status.value for status in Status)


@dataclass(frozen=True, slots=True)
class Permit:
    permitted: bool
    code: str | None = None  # why not (None when permitted)
    message: str = ""

    def __bool__(self) -> bool:
        return self.permitted


def permits(
    *, status: object, has_keys: bool, allow_warning: bool = True, expired: bool = False
) -> Permit:
    """The one decision whether keys may be used (see the module's rule)."""
    if expired:
        return Permit(False, "verdict_expired", "the verdict has expired and must be renewed")
    if not isinstance(status, str) or status not in _STATUSES:
        return Permit(False, "attestation_failed", f"unknown status {status!r}")
    if status == Status.CONTRAINDICATED:
        return Permit(False, "attestation_failed", "the server did not verify")
    if not has_keys:
        return Permit(False, "attestation_failed", "the verdict names no attested keys")
    if status == Status.WARNING and not allow_warning:
        return Permit(
            False,
            "attestation_warning",
            "the server verified only with warnings and warnings are not allowed",
        )
    return Permit(True)
