"""`[server] cors_origins`: what the config takes (the behaviour is tested over HTTP in
tests/e2e/test_openai_routes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenbridge.settings import ConfigError, parse_settings

MINIMAL = '[[channels]]\nname = "demo"\nkind = "echo"\nmodels = ["echo-1"]\n[models."echo-1"]\ninput = 1\noutput = 1\n'


def origins(value: str) -> tuple[str, ...]:
    text = f"[server]\ncors_origins = {value}\n" + MINIMAL
    return parse_settings(text, Path("/tmp/config.toml"), environ={"APP": "https://app.example"}).server.cors_origins


def test_cors_origins_reads_origins_and_the_wildcard() -> None:
    assert origins("[]") == ()
    assert origins('["https://a.example/", "http://127.0.0.1:3000", "${APP}"]') == (
        "https://a.example", "http://127.0.0.1:3000", "https://app.example",
    )  # fmt: skip
    assert origins('["*"]') == ("*",)


@pytest.mark.parametrize(
    "value, expected",
    [
        ('"https://a.example"', "server.cors_origins: expected an array of strings, got string"),
        ('["a.example"]', "server.cors_origins[0]: must be"),
        ('["https://a.example/app"]', "server.cors_origins[0]: must be"),
        ('["https://a.example", ""]', "server.cors_origins[1]: must not be empty"),
    ],
)
def test_cors_origins_refuses_what_is_no_origin(value: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        origins(value)
