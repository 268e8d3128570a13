"""Typed claims (issue 15): the committed JSON Schema the UI's tests read is what the model
generates now, every claim an appraisal issues is declared there, and the shared example claims
validate (the UI validates the same examples against the schema)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cllm.appraisal import Claims, Status, TokenClaims, Trust
from cllm.appraisal._schema import claims_schema, claims_schema_text
from cllm.policy import default_policy
from cllm.tee import load_simulated_world
from simulated_evidence import simulated_evidence

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "ui" / "src" / "claims.schema.json"
VECTORS: Any = json.loads((Path(__file__).parent / "permit_vectors.json").read_text())
NOW = 1_790_000_000
TOKEN_ORDER = ["nonce", "tee", "simulated", "tcb", "td", "components", "keys", "policy"]
TOKEN_ORDER += ["reference", "upstream", "gpus", "status", "reasons"]  # gpus: issue 17 (gpuev)


def test_committed_schema_is_the_models() -> None:
    assert SCHEMA_FILE.read_text() == claims_schema_text(), (
        "regenerate: PYTHONPATH=src python -m cllm.appraisal._schema > ui/src/claims.schema.json"
    )


@pytest.mark.parametrize("example", VECTORS["claims"], ids=lambda example: example["name"])
def test_shared_examples_validate(example: dict[str, Any]) -> None:
    claims = TokenClaims.model_validate(example["claims"])
    assert claims.status in set(Status)
    assert isinstance(claims.gpus, list)


def test_gpus_default_to_empty_and_gpu_entries_are_typed() -> None:
    assert Claims.parse({}).gpus == []
    gpu = VECTORS["claims"][2]["claims"]["gpus"][0]
    parsed = TokenClaims.model_validate({"gpus": [gpu]}).gpus[0]
    assert (parsed.status, parsed.measurements.result, parsed.ocsp) == (
        "verified",
        "matched",
        "good",
    )
    with pytest.raises(ValueError, match="status"):
        TokenClaims.model_validate({"gpus": [{**gpu, "status": "fine"}]})


@pytest.mark.parametrize(
    ("claims", "field"),
    [
        ({"status": "verified"}, "status"),
        ({"simulated": "yes"}, "simulated"),
        ({"tcb": {"collateral_expires": "soon"}}, "collateral_expires"),
        ({"upstream": {"scope": "elsewhere"}}, "scope"),
        ({"reasons": [{"code": "x"}]}, "message"),
    ],
)
def test_wrong_types_are_refused(claims: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TokenClaims.model_validate(claims)


def _undeclared(value: Any, schema: dict[str, Any], defs: dict[str, Any], path: str) -> list[str]:
    """Paths in ``value`` that the schema does not declare (objects: their properties)."""
    if "$ref" in schema:
        return _undeclared(value, defs[schema["$ref"].split("/")[-1]], defs, path)
    if "anyOf" in schema:
        found = [_undeclared(value, option, defs, path) for option in schema["anyOf"]]
        return min(found, key=len)
    if isinstance(value, dict) and "properties" in schema:
        missing = []
        for key, item in value.items():
            if key not in schema["properties"]:
                missing.append(f"{path}.{key}")
            else:
                missing += _undeclared(item, schema["properties"][key], defs, f"{path}.{key}")
        return missing
    if isinstance(value, list) and "items" in schema:
        return [m for item in value for m in _undeclared(item, schema["items"], defs, path)]
    return []


def test_every_issued_claim_is_declared(tmp_path: Path) -> None:
    world = load_simulated_world(tmp_path, clock=lambda: float(NOW))
    document, nonce = simulated_evidence(world)
    appraiser = Trust.offline().with_simulated_root(world.root_ca_path).appraiser()
    verdict = appraiser.appraise(document, nonce=nonce, policy=default_policy(), at=NOW)
    token = verdict.token_claims()
    assert verdict.status == "warning"
    assert list(token)[: len(TOKEN_ORDER)] == TOKEN_ORDER  # the token's field order, as before
    assert token["status"] == "warning"
    assert type(token["status"]) is str  # plain JSON values: the token's bytes do not change
    schema = claims_schema()
    assert _undeclared(token, schema, schema["$defs"], "claims") == []
    parsed = TokenClaims.model_validate(token)
    assert parsed.status is Status.WARNING
    assert parsed.td is not None
    assert parsed.td.mrtd == token["td"]["mrtd"]
