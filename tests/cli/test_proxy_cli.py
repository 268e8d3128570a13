"""``cllm proxy``'s command line: where it listens, and that it says so loudly when that is not
this machine's loopback; usage errors exit 2 before anything is contacted."""

from __future__ import annotations

import pytest

from cllm.cli import main
from cllm.cli._proxy import exposure_warning, parse_listen
from cllm.errors import CllmError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8787", ("127.0.0.1", 8787)),
        ("8787", ("127.0.0.1", 8787)),
        ("[::1]:9000", ("::1", 9000)),
        ("localhost:1", ("localhost", 1)),
        ("0.0.0.0:8787", ("0.0.0.0", 8787)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:0", "127.0.0.1:65536", "host.invalid:80", "x"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(CllmError) as caught:
        parse_listen(text)
    assert caught.value.code == "usage"


def test_only_loopback_is_quiet() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert exposure_warning(host) is None
    for host in ("0.0.0.0", "::", "192.0.2.20"):
        warning = exposure_warning(host)
        assert warning is not None and warning.startswith("WARNING") and host in warning


def test_usage_errors_exit_2_before_anything_is_contacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the server and verifier names do not resolve: nothing may try
    code = main(["proxy", "http://server.invalid", "--verifier", "http://verifier.invalid"])
    assert code == 2
    assert "verifier_insecure" in capsys.readouterr().err
    assert main(["proxy", "http://server.invalid", "--listen", "nowhere"]) == 2
