"""Schema-driven fuzzing of the served OpenAPI schema (schemathesis): no input gives a 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.specs.openapi.schemas import BaseOpenAPISchema

from cllm.verifier import VerifierSettings, create_app, load_state
from fuzzing import budget


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    settings = VerifierSettings(state_dir=tmp_path, pccs_url="http://127.0.0.1:9")
    return create_app(load_state(settings, clock=lambda: 1_790_000_000.0))


@pytest.fixture
def api_schema(app: FastAPI) -> BaseOpenAPISchema:
    # FastAPI serves OpenAPI 3.1, which schemathesis 3 supports behind this flag.
    return schemathesis.from_asgi("/openapi.json", app, force_schema_version="30")


schema = schemathesis.from_pytest_fixture("api_schema")


@schema.parametrize()
@budget(150)
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call_asgi()
    assert response.status_code < 500, (case.method, case.path, response.text[:200])
