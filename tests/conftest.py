import sys
from pathlib import Path

import pytest

# Test helpers (vectors.py, builders) are imported as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _own_trust_configuration(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cllm verify/chat/proxy read the user's trust configuration ($XDG_CONFIG_HOME): tests
    get an empty one of their own, never the developer's."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
