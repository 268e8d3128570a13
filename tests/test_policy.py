"""Policies: strict TOML (unknown keys are errors), the built-in default, and appraisal."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cllm.errors import PolicyError
from cllm.policy import (
    ComponentFact,
    Facts,
    appraise,
    default_policy,
    load_policies,
    parse_policy,
)
from cllm.verify import TcbStatus

ZERO = "00" * 48
MODEL = "ab" * 48
EMBEDDED = {"method": "config", "settings": {"engine": "llama-cpp", "upstream_scope": "embedded"}}
SEPT_VE_DISABLE = 1 << 28

FACTS = Facts(
    tcb_status=TcbStatus.UP_TO_DATE,
    debug=False,
    sept_ve_disable=True,
    mrtd="11" * 48,
    rtmrs=("22" * 48, "33" * 48, "44" * 48, "55" * 48),
    components=(
        ComponentFact("cllm.package", "confidential-llm", "cd" * 48),
        ComponentFact("cllm.model", "smollm2.gguf", MODEL),
        ComponentFact("cllm.config", "config", "ef" * 48, EMBEDDED),
    ),
    td_attributes=SEPT_VE_DISABLE,
    xfam="e702060000000000",
    mrconfigid=ZERO,
    mrowner=ZERO,
    mrownerconfig=ZERO,
    mrservicetd=None,
)
# The boot chain pinned: what the tests of other rules use, so that "affirming" is reachable.
BOOT = "".join(
    f'{name} = ["{value}"]\n'
    for name, value in (
        ("mrtd", "11" * 48),
        ("rtmr0", "22" * 48),
        ("rtmr1", "33" * 48),
        ("rtmr2", "44" * 48),
    )
)


def _codes(policy_text: str, facts: Facts = FACTS, *, pin: bool = True) -> tuple[str, list[str]]:
    """The verdict under ``policy_text``, with the boot chain pinned unless ``pin`` is off
    (the text's own [td] keys then go in the same table)."""
    if pin:
        policy_text = (
            policy_text.replace("[td]\n", "[td]\n" + BOOT, 1)
            if "[td]\n" in policy_text
            else f"[td]\n{BOOT}\n{policy_text}"
        )
    appraisal = appraise(parse_policy(policy_text, policy_id="t"), facts)
    return appraisal.status, [reason.code for reason in appraisal.reasons]


@pytest.mark.parametrize(
    ("status", "expected", "codes"),
    [
        # The default policy pins no software: never better than "warning" (issue 12).
        (TcbStatus.UP_TO_DATE, "warning", ["no_reference_values"]),
        (TcbStatus.SW_HARDENING_NEEDED, "warning", ["tcb_status_warning", "no_reference_values"]),
        (TcbStatus.OUT_OF_DATE, "contraindicated", ["tcb_status_rejected", "no_reference_values"]),
        (
            TcbStatus.CONFIGURATION_NEEDED,
            "contraindicated",
            ["tcb_status_rejected", "no_reference_values"],
        ),
        (
            TcbStatus.TD_RELAUNCH_ADVISED,
            "contraindicated",
            ["tcb_status_rejected", "no_reference_values"],
        ),
        (TcbStatus.REVOKED, "contraindicated", ["tcb_status_rejected", "no_reference_values"]),
    ],
)
def test_default_policy_tcb_classes(status: TcbStatus, expected: str, codes: list[str]) -> None:
    appraisal = appraise(default_policy(), replace(FACTS, tcb_status=status))
    assert appraisal.status == expected
    assert [reason.code for reason in appraisal.reasons] == codes


def test_default_policy_rejects_debug_and_lists_every_finding() -> None:
    facts = replace(FACTS, debug=True, tcb_status=TcbStatus.SW_HARDENING_NEEDED)
    appraisal = appraise(default_policy(), facts)
    assert appraisal.status == "contraindicated"
    assert [reason.code for reason in appraisal.reasons] == [
        "tcb_status_warning",
        "debug_td",
        "no_reference_values",
    ]


def test_default_policy_identity() -> None:
    policy = default_policy()
    assert policy.id == "default"
    assert len(policy.sha256) == 64
    assert policy.max_token_age == 300


def test_register_allow_lists() -> None:
    text = BOOT.replace("33" * 48, ZERO)
    text = f"[td]\n{text}"
    status, codes = _codes(text, pin=False)
    assert (status, codes) == ("contraindicated", ["rtmr1_mismatch"])
    assert _codes(text.replace(ZERO, "33" * 48), pin=False) == ("affirming", [])
    # Hex case does not matter.
    assert _codes(text.replace(ZERO, ("33" * 48).upper()), pin=False)[0] == "affirming"


def test_components_by_type_name_and_digest() -> None:
    rule = f'[[components]]\ntype = "cllm.model"\ndigest = ["sha384:{MODEL}"]\n'
    assert _codes(rule) == ("affirming", [])
    assert _codes(rule.replace(MODEL, ZERO)) == ("contraindicated", ["component_mismatch"])
    named = rule + 'name = "other.gguf"\n'
    # Deny by default: smollm2.gguf is a cllm.model no rule allows.
    assert _codes(named) == ("contraindicated", ["component_missing", "component_mismatch"])
    missing = rule.replace("cllm.model", "cllm.ui")
    assert _codes(missing) == ("contraindicated", ["component_missing"])


def test_sept_ve_disable_and_debug_keys() -> None:
    facts = replace(FACTS, sept_ve_disable=False, debug=True)
    text = "[td]\nallow_debug = true\nrequire_sept_ve_disable = true\n"
    assert _codes(text, facts) == ("contraindicated", ["sept_ve_not_disabled"])
    assert _codes("[td]\nallow_debug = true\nrequire_sept_ve_disable = false\n", facts) == (
        "affirming",
        [],
    )


def test_freshness() -> None:
    policy = parse_policy('[freshness]\nmax_token_age = "30s"\n', policy_id="t")
    assert policy.max_token_age == 30
    assert parse_policy('[freshness]\nmax_token_age = "2h"\n', policy_id="t").max_token_age == 7200


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[tcb]\naccpet = []\n", "tcb.accpet"),
        ("[tbc]\n", "tbc"),
        ('[tcb]\naccept = ["Fine"]\n', "tcb.accept"),
        ('[tcb]\naccept = ["UpToDate"]\nwarn = ["UpToDate"]\n', "both accepted and warned"),
        ('[td]\nmrtd = ["00"]\n', "td.mrtd"),
        ("[td]\nmrtd = []\n", "must not be empty"),
        ("[td]\nallow_debug = 1\n", "td.allow_debug"),
        ('[[components]]\ntype = "model"\ndigest = ["sha384:00"]\n', "components.0.type"),
        ('[[components]]\ntype = "cllm.model"\ndigest = ["sha256:00"]\n', "components.0.digest"),
        ('[freshness]\nmax_token_age = "5 minutes"\n', "freshness.max_token_age"),
        ("not toml [", "not TOML"),
    ],
)
def test_invalid_policies_are_clear_errors(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, policy_id="t")
    assert raised.value.code == "policy_invalid"
    assert fragment in raised.value.message


def test_policy_directory(tmp_path: Path) -> None:
    (tmp_path / "strict.toml").write_text(
        '[tcb]\naccept = ["UpToDate"]\n[td]\nrequire_sept_ve_disable = true\n'
    )
    policies = load_policies(tmp_path)
    assert sorted(policies) == ["default", "strict"]
    assert policies["strict"].sha256 != policies["default"].sha256
    (tmp_path / "default.toml").write_text("")
    with pytest.raises(PolicyError, match="reserved"):
        load_policies(tmp_path)
    (tmp_path / "default.toml").unlink()
    (tmp_path / "broken.toml").write_text("[td]\nallow_debgu = true\n")
    with pytest.raises(PolicyError, match="allow_debgu"):
        load_policies(tmp_path)
