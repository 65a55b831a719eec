"""What the models cost a viewer (SPEC §10, `GET /api/pricing`): the config's prices per 1M tokens
times the viewer's group multiplier, as exact decimal strings (no float ever touches them).

Made once per (config version, group) by the API; a pure function of the settings here.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from tokenbridge.money import format_usd_exact
from tokenbridge.settings import Settings

__all__ = ["price_list"]


def multiplier_text(multiplier: Fraction) -> str:
    """The multiplier as a plain decimal ("0.8", "1"): it came from a TOML decimal, so it ends."""
    text = format_usd_exact(multiplier * 10**9)  # the same exact decimals, read as "USD"
    return text.rstrip("0").rstrip(".")


def price_list(settings: Settings, group: str) -> dict[str, Any]:
    """Every served model (an enabled channel has it) with its prices after `group`'s multiplier.

    `group` is the viewer's; a group the config no longer lists is priced as `default` (as billing does).
    """
    known = group if group in settings.groups else "default"
    multiplier = settings.group(known).multiplier
    data = []
    for model in sorted(settings.routes):
        price = settings.prices[model]
        data.append({
            "model": model,
            "input_usd_per_1m": format_usd_exact(price.input * multiplier),
            "cached_input_usd_per_1m": format_usd_exact(price.cached_input * multiplier),
            "output_usd_per_1m": format_usd_exact(price.output * multiplier),
            "cache_write_usd_per_1m": format_usd_exact(price.cache_write_rate * multiplier),
            "routes": list(settings.model_routes[model]),  # routing.py: what its channels carry, narrowed
        })  # fmt: skip
    return {"object": "list", "group": known, "multiplier": multiplier_text(multiplier), "data": data}
