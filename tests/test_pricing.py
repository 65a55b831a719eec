"""The price list (pricing.py): config prices times the viewer's group multiplier, exact, as strings."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from tokenbridge.money import format_usd_exact
from tokenbridge.pricing import price_list
from tokenbridge.settings import parse_settings

CONFIG = """
[[channels]]
name = "demo"
kind = "echo"
models = ["echo-1", "cheap"]

[[channels]]
name = "off"
kind = "echo"
models = ["unserved"]
enabled = false

[models."echo-1"]
input = 1.5
output = 4.0
cached_input = 0.5

[models."cheap"]
input = 0.000000001
output = 0.075

[models."unserved"]
input = 1
output = 1

[groups.gold]
multiplier = 0.8

[groups.odd]
multiplier = 1.23456789
"""
SETTINGS = parse_settings(CONFIG, Path("config.toml"), environ={})


def test_price_list_default_group_is_the_config_prices_of_served_models_only() -> None:
    listed = price_list(SETTINGS, "default")
    assert listed["group"] == "default" and listed["multiplier"] == "1"
    every = ["chat", "completions", "responses", "embeddings", "messages"]  # an echo channel carries them all
    assert listed["data"] == [
        {"model": "cheap", "input_usd_per_1m": "0.000000001", "cached_input_usd_per_1m": "0.000000001",
         "output_usd_per_1m": "0.075", "cache_write_usd_per_1m": "0.000000001", "routes": every},
        {"model": "echo-1", "input_usd_per_1m": "1.50", "cached_input_usd_per_1m": "0.50",
         "output_usd_per_1m": "4.00", "cache_write_usd_per_1m": "1.50", "routes": every},
    ]  # fmt: skip


def test_price_list_applies_the_group_multiplier_exactly_past_nine_decimals() -> None:
    gold = {row["model"]: row for row in price_list(SETTINGS, "gold")["data"]}
    assert gold["echo-1"]["input_usd_per_1m"] == "1.20"
    assert gold["cheap"]["input_usd_per_1m"] == "0.0000000008"  # below a nano-USD: kept, not rounded
    odd = price_list(SETTINGS, "odd")
    assert odd["multiplier"] == "1.23456789"
    assert {row["model"]: row for row in odd["data"]}["cheap"]["output_usd_per_1m"] == "0.09259259175"


def test_price_list_of_a_group_the_config_lost_is_the_default_one() -> None:
    assert price_list(SETTINGS, "gone") == price_list(SETTINGS, "default")


def test_format_usd_exact_refuses_an_amount_with_no_decimal_end() -> None:
    assert format_usd_exact(Fraction(-3, 4)) == "-0.00000000075"
    with pytest.raises(ValueError, match="no exact decimal form"):
        format_usd_exact(Fraction(1, 3))
