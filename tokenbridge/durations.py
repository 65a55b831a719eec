"""Durations as people write them ("90s", "15m", "24h", "30d"): key lifetimes (keyrules.py) and the
`since` of usage reports (the CLI's `--since`, the admin API's `since`) read them the same way."""

from __future__ import annotations

import re

from tokenbridge.money import clip

_DURATION = re.compile(r"([0-9]{1,10})([smhd])")  # ASCII digits; ten at most (9999999999d is 300 million years)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """ "90s", "15m", "24h", "30d" -> seconds; ValueError says how to write one."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(
            f"{clip(text)} is not a duration: use a number (at most 10 digits) and a unit, like 90s, 15m, 24h or 30d"
        )
    return int(match[1]) * _SECONDS[match[2]]
