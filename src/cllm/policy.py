"""Appraisal policy (docs/design.md §7): TOML in, a verdict with reasons out.

A policy turns verified facts (TCB status, TD attributes and registers, the replayed
components) into an EAR status: ``affirming``, ``warning`` or ``contraindicated``, with one
reason per finding. Unknown keys are errors, never ignored: a typo must not silently weaken a
policy. Simulated evidence is not the policy's business; the verifier caps it at ``warning``
whatever the policy says.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from cllm.errors import PolicyError
from cllm.verify import TcbStatus

__all__ = [
    "DEFAULT_POLICY_ID",
    "DEFAULT_POLICY_TOML",
    "Appraisal",
    "ComponentFact",
    "Facts",
    "Policy",
    "Reason",
    "Status",
    "appraise",
    "default_policy",
    "load_policies",
    "parse_policy",
]

Status = Literal["affirming", "warning", "contraindicated"]
_RANK: Final[dict[str, int]] = {"affirming": 0, "warning": 1, "contraindicated": 2}
_HEX48: Final = re.compile(r"^[0-9a-f]{96}$")
_DIGEST: Final = re.compile(r"^sha384:[0-9a-f]{96}$")
_DURATION: Final = re.compile(r"^([1-9][0-9]*)(s|m|h)$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600}
_AGE: Final = re.compile(r"^([1-9][0-9]{0,5})(s|m|h|d)$")
_AGE_UNITS: Final = {**_UNITS, "d": 86400}
# Intel's own validity window for TCB info, QE identity and PCK CRLs (nextUpdate - issueDate).
DEFAULT_MAX_COLLATERAL_AGE: Final = "30d"

DEFAULT_POLICY_ID: Final = "default"
DEFAULT_POLICY_TOML: Final = """\
# cllm's built-in policy: current TCB only, hardening advisories as a warning, no debug TDs.
[tcb]
accept = ["UpToDate"]
warn = ["SWHardeningNeeded"]

[td]
allow_debug = false

[freshness]
max_token_age = "5m"
"""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Tcb(_Strict):
    accept: tuple[TcbStatus, ...] = (TcbStatus.UP_TO_DATE,)
    warn: tuple[TcbStatus, ...] = ()
    # Collateral (TCB info and QE identity) older than this evaluation is refused (0: none).
    min_tcb_evaluation_data_number: int = Field(default=0, ge=0, strict=True)


def _hex_list(values: tuple[str, ...]) -> tuple[str, ...]:
    lowered = tuple(value.lower() for value in values)
    for value in lowered:
        if not _HEX48.match(value):
            raise ValueError(f"{value[:20]!r}... is not 48 bytes of hex")
    return lowered


class _Td(_Strict):
    allow_debug: StrictBool = False
    require_sept_ve_disable: StrictBool = False
    mrtd: tuple[str, ...] | None = None
    rtmr0: tuple[str, ...] | None = None
    rtmr1: tuple[str, ...] | None = None
    rtmr2: tuple[str, ...] | None = None

    @field_validator("mrtd", "rtmr0", "rtmr1", "rtmr2")
    @classmethod
    def _registers(cls, values: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if values is None:
            return None
        if not values:
            raise ValueError("an allow-list must not be empty (leave the key out instead)")
        return _hex_list(values)


class _Component(_Strict):
    type: str = Field(pattern=r"^cllm\.[a-z][a-z0-9_.-]*$")
    name: str | None = None
    digest: tuple[str, ...] = Field(min_length=1)

    @field_validator("digest")
    @classmethod
    def _digests(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        lowered = tuple(value.lower() for value in values)
        for value in lowered:
            if not _DIGEST.match(value):
                raise ValueError(f"{value[:30]!r} is not sha384:<96 hex>")
        return lowered


class _Freshness(_Strict):
    max_token_age: str = "5m"
    # Hardware evidence: TCB info, QE identity and PCK CRL issued longer ago are refused.
    max_collateral_age: str = DEFAULT_MAX_COLLATERAL_AGE

    @field_validator("max_token_age")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not _DURATION.match(value):
            raise ValueError(f"{value!r} is not a duration like 30s, 5m or 1h")
        return value

    @field_validator("max_collateral_age")
    @classmethod
    def _age(cls, value: str) -> str:
        if not _AGE.match(value):
            raise ValueError(f"{value!r} is not a duration like 12h, 7d or 30d")
        return value


class _PolicyDocument(_Strict):
    tcb: _Tcb = _Tcb()
    td: _Td = _Td()
    components: tuple[_Component, ...] = ()
    freshness: _Freshness = _Freshness()


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    sha256: str  # of the policy file's bytes, so a token names exactly what it was judged by
    document: _PolicyDocument

    @property
    def max_token_age(self) -> int:
        match = _DURATION.match(self.document.freshness.max_token_age)
        assert match is not None  # validated on load
        return int(match.group(1)) * _UNITS[match.group(2)]

    @property
    def max_collateral_age(self) -> int:
        """Seconds; see docs/policy.md."""
        match = _AGE.match(self.document.freshness.max_collateral_age)
        assert match is not None  # validated on load
        return int(match.group(1)) * _AGE_UNITS[match.group(2)]

    @property
    def min_tcb_evaluation_data_number(self) -> int:
        return self.document.tcb.min_tcb_evaluation_data_number


def parse_policy(text: str | bytes, *, policy_id: str) -> Policy:
    raw = text.encode() if isinstance(text, str) else text
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"policy {policy_id}: not TOML: {exc}") from exc
    try:
        document = _PolicyDocument.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise PolicyError(f"policy {policy_id}: {problems}") from exc
    overlap = set(document.tcb.accept) & set(document.tcb.warn)
    if overlap:
        raise PolicyError(
            f"policy {policy_id}: tcb status {sorted(overlap)} is both accepted and warned"
        )
    return Policy(id=policy_id, sha256=hashlib.sha256(raw).hexdigest(), document=document)


def default_policy() -> Policy:
    return parse_policy(DEFAULT_POLICY_TOML, policy_id=DEFAULT_POLICY_ID)


def load_policies(directory: Path | None) -> dict[str, Policy]:
    """The built-in ``default`` plus every ``<id>.toml`` of ``directory`` (``default`` is
    reserved). Any invalid file fails the whole load: a service must not start half-configured."""
    policies = {DEFAULT_POLICY_ID: default_policy()}
    if directory is None:
        return policies
    try:
        files = sorted(directory.glob("*.toml"))
    except OSError as exc:
        raise PolicyError(f"cannot list {directory}: {exc.strerror}") from exc
    for path in files:
        policy_id = path.stem
        if policy_id == DEFAULT_POLICY_ID:
            raise PolicyError(f"{path}: the policy id 'default' is reserved for the built-in one")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", policy_id):
            raise PolicyError(f"{path}: policy ids are 1-64 letters, digits, '.', '_' or '-'")
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise PolicyError(f"cannot read {path}: {exc.strerror}") from exc
        policies[policy_id] = parse_policy(raw, policy_id=policy_id)
    return policies


@dataclass(frozen=True, slots=True)
class ComponentFact:
    type: str
    name: str
    digest: str  # hex SHA-384


@dataclass(frozen=True, slots=True)
class Facts:
    """What verification established about the evidence, for the policy to judge."""

    tcb_status: TcbStatus
    debug: bool
    sept_ve_disable: bool
    mrtd: str  # hex
    rtmrs: tuple[str, str, str, str]  # hex
    components: tuple[ComponentFact, ...]


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class Appraisal:
    status: Status
    reasons: tuple[Reason, ...]


def _worst(statuses: Sequence[Status]) -> Status:
    return max(statuses, key=lambda status: _RANK[status], default="affirming")


def appraise(policy: Policy, facts: Facts) -> Appraisal:
    """Every rule runs (so the reasons list all findings); the worst outcome wins."""
    findings: list[tuple[Status, Reason]] = []
    doc = policy.document

    def add(status: Status, code: str, message: str) -> None:
        findings.append((status, Reason(code, message)))

    if facts.tcb_status in doc.tcb.accept:
        pass
    elif facts.tcb_status in doc.tcb.warn:
        add(
            "warning",
            "tcb_status_warning",
            f"TCB status {facts.tcb_status.value} is accepted with a warning",
        )
    else:
        add(
            "contraindicated",
            "tcb_status_rejected",
            f"TCB status {facts.tcb_status.value} is not accepted",
        )
    if facts.debug and not doc.td.allow_debug:
        add(
            "contraindicated",
            "debug_td",
            "the TD runs in debug mode: its memory is readable by the host",
        )
    if doc.td.require_sept_ve_disable and not facts.sept_ve_disable:
        add("contraindicated", "sept_ve_not_disabled", "SEPT_VE_DISABLE is not set")
    registers: Mapping[str, tuple[str | None, tuple[str, ...] | None]] = {
        "mrtd": (facts.mrtd, doc.td.mrtd),
        "rtmr0": (facts.rtmrs[0], doc.td.rtmr0),
        "rtmr1": (facts.rtmrs[1], doc.td.rtmr1),
        "rtmr2": (facts.rtmrs[2], doc.td.rtmr2),
    }
    for name, (value, allowed) in registers.items():
        if allowed is not None and value not in allowed:
            add(
                "contraindicated",
                f"{name}_mismatch",
                f"{name.upper()} is not in the policy's allow-list",
            )
    for rule in doc.components:
        matching = [
            fact
            for fact in facts.components
            if fact.type == rule.type and (rule.name is None or fact.name == rule.name)
        ]
        label = rule.type + (f" {rule.name}" if rule.name else "")
        if not matching:
            add("contraindicated", "component_missing", f"no {label} component was measured")
        for fact in matching:
            if f"sha384:{fact.digest}" not in rule.digest:
                add(
                    "contraindicated",
                    "component_mismatch",
                    f"{fact.type} {fact.name} has digest sha384:{fact.digest[:16]}..., "
                    "not one the policy allows",
                )
    return Appraisal(
        status=_worst([status for status, _ in findings]),
        reasons=tuple(reason for _, reason in findings),
    )
