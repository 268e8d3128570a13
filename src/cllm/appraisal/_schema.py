"""The JSON Schema of the token's claims, as the UI's tests read it.

Regenerate the committed copy after changing ``cllm.appraisal.TokenClaims``::

    PYTHONPATH=src python -m cllm.appraisal._schema > ui/src/claims.schema.json

``tests/appraisal/test_claims_schema.py`` fails while the committed file differs.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from cllm.appraisal._claims import TokenClaims

__all__ = ["claims_schema", "claims_schema_text"]


def claims_schema() -> dict[str, Any]:
    schema = TokenClaims.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def claims_schema_text() -> str:
    return json.dumps(claims_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(claims_schema_text())
