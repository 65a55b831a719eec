"""period_start: where a key's spend-limit period began, UTC (SPEC §9), for an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tokenbridge.periods import period_start


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


def test_period_start_day_is_midnight_utc_of_the_same_day() -> None:
    assert period_start("day", at(2026, 3, 14, 23, 59, 59)) == at(2026, 3, 14)
    assert period_start("day", at(2026, 3, 15, 0, 0, 0)) == at(2026, 3, 15)  # 00:00 UTC: a new day begins
    assert period_start("day", at(2026, 3, 15, 0, 0, 0) - 0.001) == at(2026, 3, 14)


def test_period_start_month_is_the_first_of_the_month_utc() -> None:
    assert period_start("month", at(2026, 2, 28, 23, 59, 59)) == at(2026, 2, 1)
    assert period_start("month", at(2026, 3, 1)) == at(2026, 3, 1)
    assert period_start("month", at(2026, 12, 31, 12)) == at(2026, 12, 1)


def test_period_start_total_is_the_beginning_of_time() -> None:
    assert period_start("total", at(2026, 3, 14)) == period_start(None, at(2030, 1, 1)) == 0.0


def test_period_start_unknown_period_is_refused() -> None:
    with pytest.raises(ValueError, match="total, day, month"):
        period_start("week", at(2026, 3, 14))
