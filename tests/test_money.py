"""Exact money (money.py). Expected values are worked out by hand in the comments, never by the code under test."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenbridge.money import Price, Usage, cost, format_usd, to_fraction, to_nano

# USD per 1M tokens: input 1.5, output 4.0, cached input 0.5, in nano-USD per 1M tokens.
PRICE = Price(input=1_500_000_000, output=4_000_000_000, cached_input=500_000_000)


# --- to_nano ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usd", "nano"),
    [
        (0.1, 100_000_000),
        (0.15, 150_000_000),
        (0.075, 75_000_000),
        (0.6, 600_000_000),
        (2.5, 2_500_000_000),
        (1e-9, 1),
        (0.123456789, 123_456_789),
        (-0.25, -250_000_000),
    ],
)
def test_to_nano_exact_from_float(usd: float, nano: int) -> None:
    assert to_nano(usd) == nano


@pytest.mark.parametrize(
    ("usd", "nano"),
    [
        ("1.5", 1_500_000_000),
        ("0.000000001", 1),
        ("1e-9", 1),
        ("-0.25", -250_000_000),
        ("10", 10_000_000_000),
        ("0.100000000", 100_000_000),
    ],
)
def test_to_nano_exact_from_string(usd: str, nano: int) -> None:
    assert to_nano(usd) == nano


@pytest.mark.parametrize(("usd", "nano"), [(0, 0), (3, 3_000_000_000), (-2, -2_000_000_000)])
def test_to_nano_exact_from_int(usd: int, nano: int) -> None:
    assert to_nano(usd) == nano


def test_to_nano_exact_from_decimal() -> None:
    assert to_nano(Decimal("0.075")) == 75_000_000


@pytest.mark.parametrize("usd", ["0.0000000001", "0.1234567891", 1e-10, 0.1 + 0.2])
def test_to_nano_refuses_more_than_nine_decimals(usd: str | float) -> None:
    # 0.1 + 0.2 is the float 0.30000000000000004: its shortest repr has 17 decimals.
    with pytest.raises(ValueError, match="more than 9 decimal places"):
        to_nano(usd)


@pytest.mark.parametrize("usd", [True, False])
def test_to_nano_refuses_bool(usd: bool) -> None:
    with pytest.raises(ValueError, match="boolean"):
        to_nano(usd)


@pytest.mark.parametrize("usd", [float("nan"), float("inf"), float("-inf"), "nan", "Infinity", "-inf"])
def test_to_nano_refuses_nan_and_infinity(usd: str | float) -> None:
    with pytest.raises(ValueError, match="not a finite number"):
        to_nano(usd)


@pytest.mark.parametrize("usd", ["", "abc", "1.2.3", "$1"])
def test_to_nano_refuses_non_numbers(usd: str) -> None:
    with pytest.raises(ValueError, match="is not a number"):
        to_nano(usd)


def test_to_nano_exact_up_to_sqlite_integer_max() -> None:
    # 2**63 − 1 nano-USD, the largest SQLite INTEGER, has 19 digits; "0.000000001" steps stay exact up there.
    assert to_nano("9223372036.854775807") == 2**63 - 1
    assert to_nano("-9223372036.854775807") == -(2**63 - 1)
    assert to_nano("9223372036.854775806") == 2**63 - 2


@pytest.mark.parametrize("usd", ["9223372036.854775808", "1e30", "12345678901234567890.123456789", 1e20])
def test_to_nano_refuses_more_than_sqlite_integer_max(usd: str | float) -> None:
    # "12345678901234567890.123456789" is 29 significant digits in nano-USD: Decimal's default context rounds it.
    with pytest.raises(ValueError, match="too large"):
        to_nano(usd)


@pytest.mark.parametrize("usd", ["1e99999999", "-1e99999999", "9" * 4000, "1e400"])
def test_to_nano_refuses_a_huge_magnitude_from_its_digits_and_exponent(usd: str) -> None:
    # Judged before any power of ten is built: "1e99999999" used to compute 10**100000008 and freeze the
    # process (the admin credit route parses it). 4000 nines: past 4300 digits int() itself would refuse.
    with pytest.raises(ValueError, match="too large"):
        to_nano(usd)


@pytest.mark.parametrize(("usd", "nano"), [("1e-99999999", None), ("0e99999999", 0), ("1." + "0" * 5000, 10**9)])
def test_to_nano_huge_exponents_and_trailing_zeros_cost_nothing(usd: str, nano: int | None) -> None:
    # A tiny magnitude is "more than 9 decimal places" without computing 10**99999999; zeros are exact.
    if nano is None:
        with pytest.raises(ValueError, match="more than 9 decimal places"):
            to_nano(usd)
    else:
        assert to_nano(usd) == nano


@pytest.mark.parametrize("usd", ["5_000", "\uff11", " 5 ", "5 ", "+5", ".5", "5.", "\u0665", "1e"])
def test_to_nano_takes_only_plain_ascii_digits_in_strings(usd: str) -> None:
    # Decimal() itself takes "5_000" (as 5000), full-width and Arabic-Indic digits and surrounding spaces.
    with pytest.raises(ValueError, match="not a number"):
        to_nano(usd)


def test_to_nano_cuts_a_long_input_in_its_message() -> None:
    with pytest.raises(ValueError) as info:
        to_nano("1" * 5000)
    assert len(str(info.value)) < 200


# --- format_usd ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nano", "text"),
    [
        (0, "0.00"),
        (1_000_000_000, "1.00"),
        (1_500_000_000, "1.50"),
        (1_230_000_000, "1.23"),
        (1_234_500_000, "1.2345"),
        (12_345, "0.000012345"),
        (1, "0.000000001"),
        (100_000_000_000, "100.00"),
    ],
)
def test_format_usd_keeps_two_decimals_and_drops_other_trailing_zeros(nano: int, text: str) -> None:
    assert format_usd(nano) == text


@pytest.mark.parametrize(("nano", "text"), [(-250_000_000, "-0.25"), (-1, "-0.000000001"), (-3_500_000_000, "-3.50")])
def test_format_usd_negative(nano: int, text: str) -> None:
    assert format_usd(nano) == text


@settings(max_examples=200)
@given(st.integers(-(10**18), 10**18))
def test_format_usd_round_trips_through_to_nano(nano: int) -> None:
    assert to_nano(format_usd(nano)) == nano


# --- to_fraction --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "exact"), [(0.8, Fraction(4, 5)), (1.2, Fraction(6, 5)), (1.0, 1), (2, 2)])
def test_to_fraction_exact_from_toml_number(value: float, exact: Fraction) -> None:
    assert to_fraction(value) == exact


def test_to_fraction_refuses_bool() -> None:
    with pytest.raises(ValueError, match="boolean"):
        to_fraction(True)


# --- cost: one test per term of SPEC §6 ---------------------------------------------------------------------------


def test_cost_zero_for_no_tokens() -> None:
    assert cost(Usage(0, 0, 0), PRICE) == 0


def test_cost_uncached_input_term() -> None:
    # 1000 tokens x $1.5 / 1M = $0.0015 = 1_500_000 nano-USD.
    assert cost(Usage(prompt_tokens=1000, completion_tokens=0), PRICE) == 1_500_000


def test_cost_cached_input_term() -> None:
    # All 1000 prompt tokens cached: 1000 x $0.5 / 1M = $0.0005.
    assert cost(Usage(prompt_tokens=1000, completion_tokens=0, cached_tokens=1000), PRICE) == 500_000


def test_cost_cached_tokens_priced_only_once() -> None:
    # 600 uncached x $1.5 + 400 cached x $0.5 = $1100 per 1M tokens -> $0.0011.
    assert cost(Usage(prompt_tokens=1000, completion_tokens=0, cached_tokens=400), PRICE) == 1_100_000


def test_cost_cache_write_term_at_its_own_price() -> None:
    # 1000 prompt: 200 read (x $0.5), 300 written (x $3.75), 500 plain (x $1.5) = $1975 per 1M -> $0.001975.
    price = Price(input=1_500_000_000, output=4_000_000_000, cached_input=500_000_000, cache_write=3_750_000_000)
    assert cost(Usage(1000, 0, cached_tokens=200, cache_write_tokens=300), price) == 1_975_000


def test_cost_cache_write_defaults_to_the_input_price() -> None:
    assert cost(Usage(1000, 0, cache_write_tokens=1000), PRICE) == cost(Usage(1000, 0), PRICE) == 1_500_000


@pytest.mark.parametrize(
    ("usage", "nano"),
    [
        (Usage(100, 0, cached_tokens=80, cache_write_tokens=80), 80 * 500 + 20 * 3_750),  # writes past the prompt
        (Usage(100, 0, cached_tokens=300), 100 * 500),  # reads past the prompt
        (Usage(100, 0, cached_tokens=-50, cache_write_tokens=-50), 100 * 1_500),  # negative parts count as none
    ],
)
def test_cost_cache_parts_are_never_negative_nor_more_than_the_prompt(usage: Usage, nano: int) -> None:
    price = Price(input=1_500_000_000, output=0, cached_input=500_000_000, cache_write=3_750_000_000)
    assert cost(usage, price) == nano


def test_cost_output_term() -> None:
    # 250 tokens x $4 / 1M = $0.001.
    assert cost(Usage(prompt_tokens=0, completion_tokens=250), PRICE) == 1_000_000


def test_cost_sums_all_terms() -> None:
    # $0.0011 (input, as above) + $0.001 (output) = $0.0021.
    assert cost(Usage(1000, 250, 400), PRICE) == 2_100_000


@pytest.mark.parametrize(
    ("multiplier", "nano"),
    [
        (Fraction("0.8"), 1_680_000),  # 2_100_000 x 4/5
        (Fraction("1.2"), 2_520_000),  # 2_100_000 x 6/5
        (Fraction(1), 2_100_000),
    ],
)
def test_cost_group_multiplier_exact(multiplier: Fraction, nano: int) -> None:
    assert cost(Usage(1000, 250, 400), PRICE, multiplier) == nano


def test_cost_rounds_fractional_nano_up() -> None:
    # 3 tokens x 333_333_333 nano / 1M = 999.999999 nano -> 1000.
    price = Price(input=333_333_333, output=0, cached_input=0)
    assert cost(Usage(3, 0), price) == 1000


def test_cost_rounds_up_a_tiny_cost_to_one_nano() -> None:
    # 1 token x 1 nano / 1M = 0.000001 nano -> 1: never free by rounding.
    assert cost(Usage(1, 0), Price(input=1, output=1, cached_input=1)) == 1


def test_cost_rounds_once_per_request_not_per_term() -> None:
    # 1.5 nano input + 1.5 nano output = 3 exactly; rounding each term first would give 4.
    price = Price(input=1_500_000, output=1_500_000, cached_input=0)
    assert cost(Usage(1, 1), price) == 3


def test_cost_rounds_after_the_multiplier() -> None:
    # 1.5 nano x 6/5 = 1.8 -> 2; rounding before the multiplier would give ceil(2 x 1.2) = 3.
    price = Price(input=1_500_000, output=0, cached_input=0)
    assert cost(Usage(1, 0), price, Fraction(6, 5)) == 2


_TOKENS = st.integers(0, 10**7)
_NANO_PER_M = st.integers(0, 10**11)


@settings(max_examples=300)
@given(_TOKENS, _TOKENS, st.data(), _NANO_PER_M, _NANO_PER_M, _NANO_PER_M, st.fractions(min_value=0, max_value=10))
def test_cost_never_under_and_less_than_one_nano_over_exact_cost(
    prompt: int,
    completion: int,
    data: st.DataObject,
    price_in: int,
    price_out: int,
    price_cached: int,
    multiplier: Fraction,
) -> None:
    cached = data.draw(st.integers(0, prompt))
    exact = Fraction((prompt - cached) * price_in + cached * price_cached + completion * price_out, 10**6)
    exact *= multiplier
    charged = cost(Usage(prompt, completion, cached), Price(price_in, price_out, price_cached), multiplier)
    assert isinstance(charged, int)
    assert 0 <= charged - exact < 1
