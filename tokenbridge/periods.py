"""Where a key's spend-limit period began (SPEC §9: `total`, `day`, `month`, in UTC).

A pure function of the period and the time, so admission and its tests agree on when a day ends:
a day-period limit resets at 00:00 UTC, a month-period one at 00:00 UTC on the 1st.
"""

from __future__ import annotations

from datetime import UTC, datetime

PERIODS = ("total", "day", "month")


def period_start(period: str | None, now: float) -> float:
    """Unix seconds at which the period containing `now` began; `total` (or None): the beginning of time."""
    if period in (None, "total"):
        return 0.0
    at = datetime.fromtimestamp(now, UTC)
    if period == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    if period == "month":
        return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    raise ValueError(f"unknown spend period {period!r}: use one of {', '.join(PERIODS)}")
