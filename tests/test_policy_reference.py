"""Verdicts that mean what the badge says (issue 12), at the policy: "affirming" only with
reference values; deny-by-default component rules; TD attribute bits, MRSERVICETD and the other
TD registers; where prompts go; releases named by a policy. Written as the attacker."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from cllm.errors import PolicyError
from cllm.measure import Event, start_marker
from cllm.policy import (
    ComponentFact,
    Facts,
    appraise,
    default_policy,
    load_policies,
    parse_policy,
    where_prompts_go,
)
from cllm.quote import parse_quote
from cllm.release import PublisherKey, create_release, generate_publisher_key, load_private_key
from cllm.verify import Collateral, QuoteVerifier, TcbStatus, intel_root
from vectors import case, read, require_vectors

ZERO = "00" * 48
SEPT_VE_DISABLE = 1 << 28
MIGRATABLE = 1 << 29


def _config(scope: str, host: str | None = None, **extra: object) -> dict[str, object]:
    settings: dict[str, object] = {"upstream_scope": scope, **extra}
    if host is not None:
        settings["upstream_host"] = host
    return {"method": "config", "settings": settings, "argv": ["cllm", "serve"]}


def _event(kind: str, name: str, byte: int, details: dict[str, object] | None = None) -> Event:
    return Event(rtmr=3, type=kind, name=name, digest=bytes([byte]) * 48, details=details or {})


# What a cllm start measures (digests made up for the test), start marker first.
STARTUP = (
    start_marker(0),
    _event("cllm.package", "confidential-llm", 1),
    _event("cllm.engine", "llama_cpp_python", 2),
    _event("cllm.model", "smollm2.gguf", 3),
    _event("cllm.ui", "ui", 4),
    _event("cllm.config", "config", 5, _config("embedded")),
)


def _facts_of(events: tuple[Event, ...]) -> tuple[ComponentFact, ...]:
    return tuple(ComponentFact(e.type, e.name, e.digest.hex(), e.details) for e in events)


FACTS = Facts(
    tcb_status=TcbStatus.UP_TO_DATE,
    debug=False,
    sept_ve_disable=True,
    mrtd="11" * 48,
    rtmrs=("22" * 48, "33" * 48, "44" * 48, "55" * 48),
    components=_facts_of(STARTUP),
    td_attributes=SEPT_VE_DISABLE | 1 << 63,  # as real TDs: SEPT_VE_DISABLE and PERFMON
    xfam="e702060000000000",
    mrconfigid=ZERO,
    mrowner=ZERO,
    mrownerconfig=ZERO,
    mrservicetd=None,
)
PIN_ALL = "".join(
    f'[[components]]\ntype = "{e.type}"\ndigest = ["sha384:{e.digest.hex()}"]\n'
    for e in STARTUP[1:]
)
PIN_BOOT = (
    f'[td]\nmrtd = ["{"11" * 48}"]\nrtmr0 = ["{"22" * 48}"]\nrtmr1 = ["{"33" * 48}"]\n'
    f'rtmr2 = ["{"44" * 48}"]\n'
)


def _verdict(text: str, facts: Facts = FACTS) -> tuple[str, list[str]]:
    appraisal = appraise(parse_policy(text, policy_id="t"), facts)
    return appraisal.status, [reason.code for reason in appraisal.reasons]


def test_the_default_policy_never_affirms_unpinned_software() -> None:
    appraisal = appraise(default_policy(), FACTS)
    assert (appraisal.status, [r.code for r in appraisal.reasons]) == (
        "warning",
        ["no_reference_values"],
    )
    assert appraisal.reference["boot_chain"] is False
    assert appraisal.reference["components"] is False
    assert "which software runs was not" in appraisal.reasons[0].message


def test_pinning_every_component_or_the_boot_chain_affirms() -> None:
    assert _verdict(PIN_ALL) == ("affirming", [])
    assert _verdict(PIN_BOOT) == ("affirming", [])
    appraisal = appraise(parse_policy(PIN_ALL, policy_id="t"), FACTS)
    assert appraisal.reference["components"] is True
    assert appraisal.reference["pinned_types"] == [
        "cllm.config",
        "cllm.engine",
        "cllm.model",
        "cllm.package",
        "cllm.ui",
    ]


@pytest.mark.parametrize("left_out", ["cllm.package", "cllm.engine", "cllm.model", "cllm.ui"])
def test_one_unpinned_component_is_not_pinned_software(left_out: str) -> None:
    text = "".join(
        f'[[components]]\ntype = "{e.type}"\ndigest = ["sha384:{e.digest.hex()}"]\n'
        for e in STARTUP[1:]
        if e.type != left_out
    )
    assert _verdict(text) == ("warning", ["no_reference_values"])


def test_half_a_boot_chain_is_not_pinned() -> None:
    text = PIN_BOOT.replace(f'rtmr2 = ["{"44" * 48}"]\n', "")
    assert _verdict(text) == ("warning", ["no_reference_values"])


def test_a_foreign_td_with_made_up_components_under_default() -> None:
    """Attack: any genuine TD (another MRTD, RTMRs) claims, in its self-extended RTMR3 log,
    cllm's component names with made-up digests. The default policy must not say affirming,
    and a policy pinning cllm's components says which component is foreign."""
    foreign = replace(
        FACTS,
        mrtd="99" * 48,
        rtmrs=("98" * 48, "97" * 48, "96" * 48, "95" * 48),
        components=_facts_of(
            tuple(
                replace(event, digest=bytes([0xEE]) * 48) if event.type != "cllm.start" else event
                for event in STARTUP
            )
        ),
    )
    assert appraise(default_policy(), foreign).status == "warning"
    assert [r.code for r in appraise(default_policy(), foreign).reasons] == ["no_reference_values"]
    status, codes = _verdict(PIN_ALL, foreign)
    assert status == "contraindicated"
    assert codes == ["component_mismatch"] * 5
    assert _verdict(PIN_BOOT, foreign) == (
        "contraindicated",
        ["mrtd_mismatch", "rtmr0_mismatch", "rtmr1_mismatch", "rtmr2_mismatch"],
    )


def test_a_real_hardware_quote_with_made_up_components_is_at_best_warning() -> None:
    """The same attack with a genuine Intel quote of the corpus (verified with its collateral
    at its time): its TD is real and up to date, its components are whatever it claims."""
    require_vectors()
    entry = case("gotdxguest-cos113@20250604")
    quote = parse_quote(read(entry["quote"]))
    collateral = Collateral.from_json(read(entry["collateral"]))
    result = QuoteVerifier(trust_root=intel_root()).verify(quote, collateral, at=entry["at"])
    assert result.ok and result.tcb_status is TcbStatus.UP_TO_DATE and result.td is not None
    body = quote.td_report
    facts = Facts(
        tcb_status=result.tcb_status,
        debug=result.td.debug,
        sept_ve_disable=result.td.sept_ve_disable,
        mrtd=body.mrtd.hex(),
        rtmrs=(body.rtmr0.hex(), body.rtmr1.hex(), body.rtmr2.hex(), body.rtmr3.hex()),
        components=FACTS.components,
        td_attributes=int.from_bytes(body.td_attributes, "little"),
        xfam=body.xfam.hex(),
        mrconfigid=body.mr_config_id.hex(),
        mrowner=body.mr_owner.hex(),
        mrownerconfig=body.mr_owner_config.hex(),
        mrservicetd=None,
    )
    appraisal = appraise(default_policy(), facts)
    assert (appraisal.status, [r.code for r in appraisal.reasons]) == (
        "warning",
        ["no_reference_values"],
    )


def test_deny_by_default_judges_a_restart_with_another_model_name() -> None:
    """Attack: after a start with the pinned model, restart within the boot (RTMR3 continues)
    with a model of another name; a name-only rule used to never look at it."""
    restarted = _facts_of(
        (
            *STARTUP,
            start_marker(1),
            *STARTUP[1:3],
            _event("cllm.model", "evil.gguf", 0x66),
            *STARTUP[4:],
        )
    )
    facts = replace(FACTS, components=restarted)
    text = PIN_ALL.replace(
        '[[components]]\ntype = "cllm.model"',
        '[[components]]\ntype = "cllm.model"\nname = "smollm2.gguf"',
    )
    appraisal = appraise(parse_policy(text, policy_id="t"), facts)
    assert appraisal.status == "contraindicated"
    assert [r.code for r in appraisal.reasons] == ["component_mismatch"]
    assert "cllm.model evil.gguf" in appraisal.reasons[0].message


def test_start_markers_are_not_components() -> None:
    with pytest.raises(PolicyError, match="start marker"):
        parse_policy(
            '[[components]]\ntype = "cllm.start"\ndigest = ["sha384:' + ZERO + '"]\n', policy_id="t"
        )
    # A log of start markers only still needs the core components to be pinned software.
    assert _verdict(PIN_ALL, replace(FACTS, components=_facts_of((start_marker(0),))))[0] == (
        "contraindicated"
    )


@pytest.mark.parametrize(
    ("attributes", "fragment"),
    [
        (SEPT_VE_DISABLE | MIGRATABLE, "MIGRATABLE"),
        (SEPT_VE_DISABLE | 1 << 33, "reserved bit 33"),
        (SEPT_VE_DISABLE | 1 << 5, "PERF_PROF"),
        (SEPT_VE_DISABLE | 1 << 1, "reserved bit 1"),
    ],
)
def test_td_attribute_bits_outside_the_allowed_set(attributes: int, fragment: str) -> None:
    appraisal = appraise(
        parse_policy(PIN_BOOT, policy_id="t"), replace(FACTS, td_attributes=attributes)
    )
    assert appraisal.status == "contraindicated"
    assert [r.code for r in appraisal.reasons] == ["td_attributes_not_allowed"]
    assert fragment in appraisal.reasons[0].message


def test_allowed_attributes_and_sept_ve_disable_keys() -> None:
    migratable = replace(FACTS, td_attributes=SEPT_VE_DISABLE | MIGRATABLE)
    allowing = PIN_BOOT + 'allowed_attributes = ["SEPT_VE_DISABLE", "MIGRATABLE"]\n'
    assert _verdict(allowing, migratable) == ("affirming", [])
    no_sept = replace(FACTS, td_attributes=0, sept_ve_disable=False)
    assert _verdict(PIN_BOOT, no_sept) == ("contraindicated", ["sept_ve_not_disabled"])
    assert appraise(default_policy(), no_sept).status == "contraindicated"
    assert _verdict(PIN_BOOT + "require_sept_ve_disable = false\n", no_sept) == ("affirming", [])
    with pytest.raises(PolicyError, match="allow_debug"):
        parse_policy('[td]\nallowed_attributes = ["DEBUG"]\n', policy_id="t")
    with pytest.raises(PolicyError, match="TD_ATTRIBUTES bit name"):
        parse_policy('[td]\nallowed_attributes = ["FAST"]\n', policy_id="t")


def test_a_bound_service_td_is_refused_unless_allowed() -> None:
    bound = replace(FACTS, mrservicetd="5a" * 48)
    assert _verdict(PIN_BOOT, bound) == ("contraindicated", ["mrservicetd_mismatch"])
    assert [r.code for r in appraise(default_policy(), bound).reasons] == [
        "mrservicetd_mismatch",
        "no_reference_values",
    ]
    assert _verdict(PIN_BOOT, replace(FACTS, mrservicetd=ZERO)) == ("affirming", [])
    allowing = PIN_BOOT + f'mrservicetd = ["{"5a" * 48}"]\n'
    assert _verdict(allowing, bound) == ("affirming", [])


@pytest.mark.parametrize(
    ("key", "field", "allowed", "actual"),
    [
        ("mrconfigid", "mrconfigid", "01" * 48, ZERO),
        ("mrowner", "mrowner", "02" * 48, ZERO),
        ("mrownerconfig", "mrownerconfig", "03" * 48, ZERO),
        ("xfam", "xfam", "e700060000000000", "e702060000000000"),
    ],
)
def test_td_register_allow_lists(key: str, field: str, allowed: str, actual: str) -> None:
    text = PIN_BOOT + f'{key} = ["{allowed.upper()}"]\n'
    assert _verdict(text) == ("contraindicated", [f"{key}_mismatch"])
    assert _verdict(text, replace(FACTS, **{field: allowed})) == ("affirming", [])
    with pytest.raises(PolicyError):
        parse_policy(f'[td]\n{key} = ["00"]\n', policy_id="t")


def test_prompts_forwarded_off_the_td() -> None:
    remote = _facts_of(
        (*STARTUP[:5], _event("cllm.config", "config", 5, _config("remote", "llm.invalid")))
    )
    facts = replace(FACTS, components=remote)
    appraisal = appraise(default_policy(), facts)
    assert appraisal.status == "contraindicated"
    assert [r.code for r in appraisal.reasons] == ["upstream_not_local", "no_reference_values"]
    assert "llm.invalid" in appraisal.reasons[0].message
    assert where_prompts_go(remote) == {"scope": "remote", "host": "llm.invalid"}
    allowing = PIN_BOOT + '[upstream]\nallow_remote_hosts = ["llm.invalid"]\n'
    assert _verdict(allowing, facts) == ("affirming", [])
    loopback = _config("loopback")
    local = replace(
        FACTS, components=_facts_of((*STARTUP[:5], _event("cllm.config", "c", 5, loopback)))
    )
    assert _verdict(PIN_BOOT, local) == ("affirming", [])
    assert where_prompts_go(local.components) == {"scope": "loopback", "host": None}


def test_an_earlier_start_that_sent_prompts_away_is_judged_too() -> None:
    history = _facts_of(
        (
            *STARTUP[:5],
            _event("cllm.config", "config", 6, _config("remote", "exfil.invalid")),
            start_marker(1),
            *STARTUP[1:],
        )
    )
    facts = replace(FACTS, components=history)
    assert where_prompts_go(history)["scope"] == "embedded"  # the live start...
    assert _verdict(PIN_BOOT, facts) == ("contraindicated", ["upstream_not_local"])  # ...not all


def test_a_configuration_that_does_not_say_where_prompts_go() -> None:
    silent = replace(
        FACTS, components=_facts_of((*STARTUP[:5], _event("cllm.config", "config", 5, {})))
    )
    assert _verdict(PIN_BOOT, silent) == ("warning", ["upstream_unknown"])
    no_config = replace(FACTS, components=_facts_of(STARTUP[:5]))
    assert _verdict(PIN_BOOT, no_config) == ("warning", ["upstream_unknown"])


def _publish(tmp_path: Path, events: tuple[Event, ...], boot: dict[str, str] | None = None) -> Path:
    private, public = generate_publisher_key()
    (tmp_path / "publisher.pem").write_bytes(public)
    manifest = create_release(
        name="cllm",
        version="1.0",
        created=1_790_000_000,
        components=events,
        boot=boot or {},
        key=load_private_key(private),
    )
    (tmp_path / "release.json").write_bytes(manifest)
    return tmp_path


def test_a_policy_names_a_signed_release(tmp_path: Path) -> None:
    directory = _publish(tmp_path, STARTUP)
    (directory / "cllm-1.toml").write_text(
        '[release]\nmanifest = "release.json"\npublisher_key = "publisher.pem"\n'
    )
    policy = load_policies(directory)["cllm-1"]
    appraisal = appraise(policy, FACTS)
    assert (appraisal.status, appraisal.reasons) == ("affirming", ())
    (summary,) = appraisal.reference["releases"]
    assert summary["name"] == "cllm"
    assert summary["publisher_key_sha256"] == policy.releases[0].publisher.sha256
    other = replace(
        FACTS,
        components=_facts_of((*STARTUP[:3], _event("cllm.model", "smollm2.gguf", 9), *STARTUP[4:])),
    )
    appraisal = appraise(policy, other)
    assert [r.code for r in appraisal.reasons] == ["component_mismatch"]
    assert "cllm.model smollm2.gguf" in appraisal.reasons[0].message
    assert "release cllm 1.0" in appraisal.reasons[0].message


def test_a_release_that_pins_the_boot_chain(tmp_path: Path) -> None:
    boot = {"mrtd": "11" * 48, "rtmr0": "22" * 48, "rtmr1": "33" * 48, "rtmr2": "44" * 48}
    directory = _publish(tmp_path, (), boot)
    from cllm.release import load_release

    release = load_release(directory / "release.json", publisher_key=directory / "publisher.pem")
    policy = default_policy().with_release(release)
    assert appraise(policy, FACTS).status == "affirming"
    moved = replace(FACTS, rtmrs=("22" * 48, "34" * 48, "44" * 48, "55" * 48))
    assert [r.code for r in appraise(policy, moved).reasons] == ["rtmr1_mismatch"]


def test_a_policy_naming_a_release_it_cannot_verify_does_not_load(tmp_path: Path) -> None:
    directory = _publish(tmp_path, STARTUP)
    _, stranger = generate_publisher_key()
    (directory / "stranger.pem").write_bytes(stranger)
    (directory / "p.toml").write_text(
        '[release]\nmanifest = "release.json"\npublisher_key = "stranger.pem"\n'
    )
    with pytest.raises(PolicyError) as raised:
        load_policies(directory)
    assert raised.value.code == "release_wrong_publisher"
    doc = json.loads((directory / "release.json").read_text())
    doc["version"] = "2.0"
    (directory / "release.json").write_text(json.dumps(doc))
    (directory / "p.toml").write_text(
        '[release]\nmanifest = "release.json"\npublisher_key = "publisher.pem"\n'
    )
    with pytest.raises(PolicyError) as raised:
        load_policies(directory)
    assert raised.value.code == "release_bad_signature"
    with pytest.raises(PolicyError, match="absolute"):
        parse_policy('[release]\nmanifest = "r.json"\npublisher_key = "k.pem"\n', policy_id="t")
    trusted = PublisherKey.from_pem((directory / "publisher.pem").read_bytes())
    assert PublisherKey.from_pem(stranger).sha256 != trusted.sha256
