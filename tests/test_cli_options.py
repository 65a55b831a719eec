"""The CLI's options go before or after the command (issue 11, item 19: the README says every command
takes `--config`, and `tokenbridge --config X usage` was refused)."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from tokenbridge.cli import main

SHIPPED_CONFIG = Path(__file__).parents[1] / "config.toml"


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "{config}", "--json", "keys", "list"],
        ["--config", "{config}", "keys", "list", "--json"],
        ["--json", "keys", "list", "--config", "{config}"],
        ["keys", "list", "--config", "{config}", "--json"],
    ],
)
def test_cli_takes_config_and_json_before_or_after_the_command(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    shutil.copy(SHIPPED_CONFIG, config)
    assert main(["keys", "create", "opt", "--config", str(config)]) == 0
    capsys.readouterr()
    assert main([arg.format(config=config) for arg in argv]) == 0
    assert [key["name"] for key in orjson.loads(capsys.readouterr().out)] == ["opt"]


def test_cli_usage_reads_config_given_before_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    shutil.copy(SHIPPED_CONFIG, config)
    assert main(["--config", str(config), "usage", "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == []
    assert (tmp_path / "tokenbridge.db").exists()  # it read the config given, not ./config.toml
