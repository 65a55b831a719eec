"""The rules on what a key may be given (keyrules.py), which the CLI and the admin API both apply, and
the duration syntax (durations.parse_duration) behind `expires_in` and `since`."""

from __future__ import annotations

import datetime as dt

import pytest

from tokenbridge import keyrules
from tokenbridge.durations import parse_duration


def test_end_of_time_is_the_last_second_of_9999_utc() -> None:
    assert keyrules.END_OF_TIME == dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize("name", ["alice", "a", "team.alice@x-1_2", "9" * 64])
def test_key_name_takes_url_safe_names(name: str) -> None:
    assert keyrules.key_name(name) == name


@pytest.mark.parametrize("name", ["", "team/alice", "=HYPERLINK(1)", "-lead", "a" * 65, "ä", 5, None])
def test_key_name_refuses_what_a_url_path_or_a_spreadsheet_would_mangle(name: object) -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        keyrules.key_name(name)


@pytest.mark.parametrize("value", [1, 10**9])
def test_per_minute_takes_1_to_a_billion(value: int) -> None:
    assert keyrules.per_minute(value) == value


@pytest.mark.parametrize("value", [0, -1, 10**9 + 1, 2**63, True, 1.5, "5"])
def test_per_minute_refuses_the_rest(value: object) -> None:
    with pytest.raises(ValueError, match="from 1 to 1000000000"):
        keyrules.per_minute(value)


@pytest.mark.parametrize("unix_s", [0, -1, 253402300800, 1e308, float("inf"), 2**64 - 1])
def test_expiry_refuses_before_1970_and_after_9999(unix_s: float) -> None:
    with pytest.raises(ValueError, match="the end of 9999"):
        keyrules.expiry(unix_s)


def test_expires_in_ends_at_the_latest_in_9999() -> None:
    assert keyrules.expiry(253402300799) == 253402300799.0
    assert keyrules.expires_in("30d") <= keyrules.END_OF_TIME
    with pytest.raises(ValueError, match="after the year 9999"):
        keyrules.expires_in("9999999999d")


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("24h", 86400), ("30d", 2592000),
                                               ("9999999999s", 9999999999)])  # fmt: skip
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["99999999999s", "9" * 400 + "d", "\u0665d", "\u00b2h", "1.5h", "d", "-1d"])
def test_parse_duration_takes_at_most_ten_ascii_digits(text: str) -> None:
    # 400 digits used to become an int too large for a float: an OverflowError, a 500 on the admin API.
    with pytest.raises(ValueError, match="not a duration") as info:
        parse_duration(text)
    assert len(str(info.value)) < 200
