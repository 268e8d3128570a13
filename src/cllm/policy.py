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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from cllm.errors import CllmError, PolicyError
from cllm.release import BOOT_REGISTERS, Release, load_release
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
    "StatusName",
    "appraise",
    "default_policy",
    "load_policies",
    "parse_policy",
    "where_prompts_go",
]


class Status(StrEnum):
    """The EAR verdict: the one status type of issuers (policy, appraisal, token), the SDK, the
    CLI and the UI (``ui/src/claims.schema.json``). A ``str``: it compares, hashes and encodes
    as its value, so tokens and JSON keep the exact strings."""

    AFFIRMING = "affirming"
    WARNING = "warning"
    CONTRAINDICATED = "contraindicated"


# A finding's level as the rules below write it (plain strings); ``Status`` once judged.
StatusName = Literal["affirming", "warning", "contraindicated"]
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
# Not migratable, no reserved attribute bits, no service TD bound, SEPT_VE_DISABLE set: the
# defaults of the keys below, spelled out.
require_sept_ve_disable = true
allowed_attributes = ["SEPT_VE_DISABLE", "LASS", "PKS", "KL", "ICSSD", "TPA", "PERFMON"]

[freshness]
max_token_age = "5m"
# No reference values: the best verdict is "warning" (no_reference_values). Name a signed
# release ([release]) or pin the boot chain or every component to reach "affirming".
"""

# TD_ATTRIBUTES bits by name (Intel TDX module ABI, "TD_ATTRIBUTES"); every other bit is
# reserved. Bits 0-7 are the "TD under debug" group: DEBUG is governed by allow_debug, the
# profiling bits are never allowed by default.
TD_ATTRIBUTE_BITS: Final[dict[str, int]] = {
    "DEBUG": 0,
    "HGS_PLUS_PROF": 4,
    "PERF_PROF": 5,
    "PMT_PROF": 6,
    "ICSSD": 16,
    "LASS": 27,
    "SEPT_VE_DISABLE": 28,
    "MIGRATABLE": 29,
    "PKS": 30,
    "KL": 31,
    "TPA": 62,
    "PERFMON": 63,
}
_ATTRIBUTE_NAMES: Final = {bit: name for name, bit in TD_ATTRIBUTE_BITS.items()}
DEFAULT_ALLOWED_ATTRIBUTES: Final = (
    "SEPT_VE_DISABLE",
    "LASS",
    "PKS",
    "KL",
    "ICSSD",
    "TPA",
    "PERFMON",
)
# The startup components (docs/design.md, section 4). Pinning "every measured component" means
# these four, plus every other component type the evidence carries (cllm.ui when served).
CORE_COMPONENTS: Final = ("cllm.package", "cllm.engine", "cllm.model", "cllm.config")
START_EVENT_TYPE: Final = "cllm.start"  # the start marker of each `cllm serve` start
# The GPU boot gate's statement: its digest covers a fresh nonce's evidence, so it differs every
# start and is no software to pin; GPUs are judged on each attestation's evidence by [gpu].
GPU_EVENT_TYPE: Final = "cllm.gpu"
_ZERO48: Final = "00" * 48
_HEX8: Final = re.compile(r"^[0-9a-f]{16}$")


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
    require_sept_ve_disable: StrictBool = True
    mrtd: tuple[str, ...] | None = None
    rtmr0: tuple[str, ...] | None = None
    rtmr1: tuple[str, ...] | None = None
    rtmr2: tuple[str, ...] | None = None
    # Absent: only zero (no service TD bound; a TD report 1.0 has none).
    mrservicetd: tuple[str, ...] | None = None
    mrconfigid: tuple[str, ...] | None = None
    mrowner: tuple[str, ...] | None = None
    mrownerconfig: tuple[str, ...] | None = None
    xfam: tuple[str, ...] | None = None  # 8 bytes, hex as in the quote
    allowed_attributes: tuple[str, ...] = DEFAULT_ALLOWED_ATTRIBUTES

    @field_validator(
        "mrtd", "rtmr0", "rtmr1", "rtmr2", "mrservicetd", "mrconfigid", "mrowner", "mrownerconfig"
    )
    @classmethod
    def _registers(cls, values: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if values is None:
            return None
        if not values:
            raise ValueError("an allow-list must not be empty (leave the key out instead)")
        return _hex_list(values)

    @field_validator("xfam")
    @classmethod
    def _xfam(cls, values: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if values is None:
            return None
        if not values:
            raise ValueError("an allow-list must not be empty (leave the key out instead)")
        lowered = tuple(value.lower() for value in values)
        for value in lowered:
            if not _HEX8.match(value):
                raise ValueError(f"{value[:20]!r} is not 8 bytes of hex")
        return lowered

    @field_validator("allowed_attributes")
    @classmethod
    def _attributes(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if value == "DEBUG":
                raise ValueError("DEBUG is governed by allow_debug")
            if value not in TD_ATTRIBUTE_BITS:
                raise ValueError(f"{value[:30]!r} is not a TD_ATTRIBUTES bit name")
        return values


class _Component(_Strict):
    type: str = Field(pattern=r"^cllm\.[a-z][a-z0-9_.-]*$")
    name: str | None = None
    digest: tuple[str, ...] = Field(min_length=1)

    @field_validator("type")
    @classmethod
    def _not_a_marker(cls, value: str) -> str:
        if value == START_EVENT_TYPE:
            raise ValueError("cllm.start is a start marker, not a component")
        return value

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


class _Upstream(_Strict):
    # Hosts a `cllm serve --allow-remote-upstream` may forward prompts to (exact names).
    allow_remote_hosts: tuple[str, ...] = ()


class _ReleaseRef(_Strict):
    manifest: str = Field(min_length=1)  # paths relative to the policy file's directory
    publisher_key: str = Field(min_length=1)


_DRIVER_VERSION: Final = re.compile(r"^[0-9]{1,8}(\.[0-9]{1,8}){0,5}$")
_VBIOS_VERSION: Final = re.compile(r"^[0-9A-Fa-f]{1,8}(\.[0-9A-Fa-f]{1,8}){0,5}$")
GpuArchName = Literal["hopper", "blackwell"]
GpuModeName = Literal["single", "multi", "ppcie"]


def _versions(
    value: str | tuple[str, ...] | None, pattern: re.Pattern[str], what: str
) -> str | tuple[str, ...] | None:
    if value is None:
        return None
    values = (value,) if isinstance(value, str) else value
    if not values:
        raise ValueError("an allow-list must not be empty (leave the key out instead)")
    for item in values:
        if not pattern.match(item):
            raise ValueError(f"{item[:30]!r} is not {what}")
    return value


class _Gpu(_Strict):
    """GPU requirements (docs/policy.md, "[gpu]"). The defaults judge GPU evidence strictly
    when a server sends it and ask for none otherwise, so machines without GPUs appraise as
    before."""

    required: StrictBool = False  # attested GPU evidence must be present
    count: int | None = Field(default=None, ge=1, le=64, strict=True)  # exactly this many
    allowed_architectures: tuple[GpuArchName, ...] = ("hopper", "blackwell")
    min_driver_version: str | None = None  # dotted decimal, compared numerically
    allowed_driver_versions: tuple[str, ...] | None = None
    min_vbios_version: str | None = None  # dotted hex (96.00.5E.00.04), compared numerically
    allowed_vbios_versions: tuple[str, ...] | None = None
    allowed_modes: tuple[GpuModeName, ...] = ("single", "multi", "ppcie")
    require_measurements: StrictBool = True  # driver and VBIOS RIMs found, verified, matched
    ocsp: Literal["require", "allow-unknown", "off"] = "require"

    @field_validator("min_driver_version", "allowed_driver_versions")
    @classmethod
    def _driver(cls, value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        return _versions(value, _DRIVER_VERSION, "a dotted decimal version (570.124.03)")

    @field_validator("min_vbios_version", "allowed_vbios_versions")
    @classmethod
    def _vbios(cls, value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        return _versions(value, _VBIOS_VERSION, "a dotted hex version (96.00.5E.00.04)")

    @field_validator("allowed_architectures", "allowed_modes")
    @classmethod
    def _not_empty(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if not values:
            raise ValueError("must name at least one")
        return values


class _PolicyDocument(_Strict):
    tcb: _Tcb = _Tcb()
    td: _Td = _Td()
    components: tuple[_Component, ...] = ()
    freshness: _Freshness = _Freshness()
    upstream: _Upstream = _Upstream()
    release: _ReleaseRef | None = None
    gpu: _Gpu = _Gpu()


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    sha256: str  # of the policy file's bytes, so a token names exactly what it was judged by
    document: _PolicyDocument
    # Signed releases whose reference values also apply (the policy's [release], or one the
    # user named: ``with_release``). Each is verified under its publisher key before use.
    releases: tuple[Release, ...] = ()

    def with_release(self, release: Release) -> Policy:
        return replace(self, releases=(*self.releases, release))

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


def parse_policy(text: str | bytes, *, policy_id: str, base_dir: Path | None = None) -> Policy:
    """A policy from TOML. A ``[release]`` is loaded and its signature verified now, its paths
    relative to ``base_dir`` (the policy file's directory); a bad one fails the whole load."""
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
    releases: tuple[Release, ...] = ()
    if document.release is not None:
        releases = (_load_release(document.release, policy_id=policy_id, base_dir=base_dir),)
    return Policy(
        id=policy_id,
        sha256=hashlib.sha256(raw).hexdigest(),
        document=document,
        releases=releases,
    )


def _load_release(ref: _ReleaseRef, *, policy_id: str, base_dir: Path | None) -> Release:
    paths = [Path(ref.manifest), Path(ref.publisher_key)]
    if base_dir is None and not all(path.is_absolute() for path in paths):
        raise PolicyError(f"policy {policy_id}: [release] paths must be absolute here")
    manifest, key = (path if path.is_absolute() else (base_dir or Path()) / path for path in paths)
    try:
        return load_release(manifest, publisher_key=key)
    except CllmError as exc:
        raise PolicyError(f"policy {policy_id}: [release]: {exc.message}", code=exc.code) from exc


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
        policies[policy_id] = parse_policy(raw, policy_id=policy_id, base_dir=directory)
    return policies


@dataclass(frozen=True, slots=True)
class ComponentFact:
    type: str
    name: str
    digest: str  # hex SHA-384
    details: Mapping[str, Any] = field(default_factory=dict)  # the event's details


@dataclass(frozen=True, slots=True)
class Facts:
    """What verification established about the evidence, for the policy to judge."""

    tcb_status: TcbStatus
    debug: bool
    sept_ve_disable: bool
    mrtd: str  # hex
    rtmrs: tuple[str, str, str, str]  # hex
    components: tuple[ComponentFact, ...]
    td_attributes: int  # TD_ATTRIBUTES as an unsigned 64-bit integer
    xfam: str  # hex, as in the quote
    mrconfigid: str  # hex
    mrowner: str  # hex
    mrownerconfig: str  # hex
    mrservicetd: str | None  # hex; None: TD report 1.0, which has no service TDs


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
    # What the verdict rests on (token claim ``reference``): which software was pinned, by
    # which release. Empty when appraisal did not get as far as the policy.
    reference: Mapping[str, Any] = field(default_factory=dict)


def _worst(statuses: Sequence[StatusName | Status]) -> Status:
    return Status(max(statuses, key=lambda status: _RANK[status], default="affirming"))


def appraise(policy: Policy, facts: Facts) -> Appraisal:
    """Every rule runs (so the reasons list all findings); the worst outcome wins."""
    findings: list[tuple[StatusName, Reason]] = []
    doc = policy.document

    def add(status: StatusName, code: str, message: str) -> None:
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
    allowed_bits = {TD_ATTRIBUTE_BITS[name] for name in doc.td.allowed_attributes}
    refused = [
        _ATTRIBUTE_NAMES.get(bit, f"reserved bit {bit}")
        for bit in range(64)
        if facts.td_attributes >> bit & 1 and bit != 0 and bit not in allowed_bits
    ]
    if refused:
        add(
            "contraindicated",
            "td_attributes_not_allowed",
            f"TD_ATTRIBUTES has {', '.join(refused)} set, which the policy does not allow",
        )
    registers: Mapping[str, tuple[str | None, tuple[str, ...] | None]] = {
        "mrtd": (facts.mrtd, doc.td.mrtd),
        "rtmr0": (facts.rtmrs[0], doc.td.rtmr0),
        "rtmr1": (facts.rtmrs[1], doc.td.rtmr1),
        "rtmr2": (facts.rtmrs[2], doc.td.rtmr2),
        "mrconfigid": (facts.mrconfigid, doc.td.mrconfigid),
        "mrowner": (facts.mrowner, doc.td.mrowner),
        "mrownerconfig": (facts.mrownerconfig, doc.td.mrownerconfig),
        "xfam": (facts.xfam, doc.td.xfam),
        # A TD report 1.0 cannot bind a service TD; absent means "must be zero".
        "mrservicetd": (facts.mrservicetd or _ZERO48, doc.td.mrservicetd or (_ZERO48,)),
    }
    for name, (value, allowed) in registers.items():
        if allowed is not None and value not in allowed:
            add(
                "contraindicated",
                f"{name}_mismatch",
                f"{name.upper()} is not in the policy's allow-list",
            )
    for release in policy.releases:
        for name, value in release.boot.items():
            actual = facts.mrtd if name == "mrtd" else facts.rtmrs[int(name[-1])]
            if actual != value:
                add(
                    "contraindicated",
                    f"{name}_mismatch",
                    f"{name.upper()} is not the value release {_label(release)} pins",
                )
    components = [fact for fact in facts.components if fact.type != START_EVENT_TYPE]
    rule_sets: list[tuple[str, list[tuple[str, str | None, tuple[str, ...]]]]] = [
        ("the policy", [(rule.type, rule.name, rule.digest) for rule in doc.components])
    ]
    for release in policy.releases:
        pinned: list[tuple[str, str | None, tuple[str, ...]]] = [
            (event.type, event.name, (f"sha384:{event.digest.hex()}",))
            for event in release.components
        ]
        rule_sets.append((f"release {_label(release)}", pinned))
    for source, rules in rule_sets:
        _judge_components(source, rules, components, add)
    _judge_upstream(facts.components, doc.upstream.allow_remote_hosts, add)
    reference = _reference(policy, components)
    if not (reference["boot_chain"] or reference["components"]):
        unpinned = sorted(
            {fact.type for fact in components}.union(CORE_COMPONENTS)
            - set(reference["pinned_types"])
            - {GPU_EVENT_TYPE}
        )
        add(
            "warning",
            "no_reference_values",
            "the policy pins neither the boot chain (MRTD, RTMR0-2) nor every measured "
            f"component (unpinned: {', '.join(unpinned)}): the hardware and its TCB were "
            "checked, which software runs was not",
        )
    return Appraisal(
        status=_worst([status for status, _ in findings]),
        reasons=tuple(reason for _, reason in findings),
        reference=reference,
    )


def _label(release: Release) -> str:
    return f"{release.name} {release.version}"


_Add = Callable[[StatusName, str, str], None]


def _judge_components(
    source: str,
    rules: Sequence[tuple[str, str | None, tuple[str, ...]]],
    components: Sequence[ComponentFact],
    add: _Add,
) -> None:
    """Each rule must find its component; and, deny by default, every component of a type the
    rules pin must match one of that type's rules (name, when the rule has one, and digest).
    Every event of the log is judged, earlier starts within the boot included."""
    for kind, name, _ in rules:
        if not any(f.type == kind and (name is None or f.name == name) for f in components):
            label = kind + (f" {name}" if name else "")
            add("contraindicated", "component_missing", f"no {label} component was measured")
    pinned = {kind for kind, _, _ in rules}
    for fact in components:
        if fact.type not in pinned:
            continue
        digest = f"sha384:{fact.digest}"
        if not any(
            kind == fact.type and (name is None or name == fact.name) and digest in digests
            for kind, name, digests in rules
        ):
            add(
                "contraindicated",
                "component_mismatch",
                f"{fact.type} {fact.name} has digest sha384:{fact.digest[:16]}..., "
                f"not one {source} allows",
            )


def where_prompts_go(components: Sequence[ComponentFact]) -> dict[str, Any]:
    """Where the live start (the last ``cllm.config`` event) sends prompts: ``{"scope":
    "embedded" | "loopback" | "remote" | "unknown", "host": str | None}``."""
    configs = [fact for fact in components if fact.type == "cllm.config"]
    if not configs:
        return {"scope": "unknown", "host": None}
    return _upstream_of(configs[-1])


def _upstream_of(fact: ComponentFact) -> dict[str, Any]:
    settings = fact.details.get("settings")
    settings = settings if isinstance(settings, Mapping) else {}
    scope = settings.get("upstream_scope")
    host = settings.get("upstream_host")
    if scope not in ("embedded", "loopback", "remote"):
        return {"scope": "unknown", "host": None}
    return {"scope": scope, "host": host if isinstance(host, str) and scope == "remote" else None}


def _judge_upstream(components: Sequence[ComponentFact], allowed: Sequence[str], add: _Add) -> None:
    """Every start's configuration (the whole history) must keep prompts inside the TD, or
    send them only to a host the policy allows."""
    configs = [fact for fact in components if fact.type == "cllm.config"]
    unknown = not configs
    for fact in configs:
        upstream = _upstream_of(fact)
        if upstream["scope"] == "remote" and upstream["host"] not in allowed:
            add(
                "contraindicated",
                "upstream_not_local",
                f"prompts are forwarded to {str(upstream['host'])[:255]!r}, outside the TD",
            )
        unknown = unknown or upstream["scope"] == "unknown"
    if unknown:
        add(
            "warning",
            "upstream_unknown",
            "the measured configuration does not say where prompts go",
        )


def _reference(policy: Policy, components: Sequence[ComponentFact]) -> dict[str, Any]:
    """What the policy pins, judged against the component types the evidence carries."""
    doc = policy.document
    boot = all(
        getattr(doc.td, register) is not None
        or any(register in release.boot for release in policy.releases)
        for register in BOOT_REGISTERS
    )
    pinned = {rule.type for rule in doc.components}
    for release in policy.releases:
        pinned.update(event.type for event in release.components)
    present = {fact.type for fact in components} - {GPU_EVENT_TYPE}
    return {
        "boot_chain": boot,
        "components": set(CORE_COMPONENTS) <= pinned and present <= pinned,
        "pinned_types": sorted(pinned),
        "releases": [release.summary() for release in policy.releases],
    }
