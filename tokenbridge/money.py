"""Exact money: integer nano-USD, prices and the cost of a usage (pure functions).

The unit is the nano-USD (1e-9 USD). Balances, holds, ledger amounts and costs are Python ints and
SQLite INTEGERs, never floats. Prices are kept as integer nano-USD per 1M tokens, so a price may
carry up to 9 decimal places of USD per 1M tokens (0.075 -> 75_000_000).

Rounding rule (SPEC §6): the exact rational cost of a request is rounded **up** to the next whole
nano-USD, once per request. The gateway never charges less than the price list says, and never more
than one nano-USD above it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import ClassVar

NANO_PER_USD = 10**9
MAX_NANO = 2**63 - 1  # SQLite INTEGER: ~9.2 billion USD
TOKENS_PER_PRICE_UNIT = 10**6  # prices are USD per 1M tokens
_MAX_NANO_DIGITS = len(str(MAX_NANO))  # 19
# An amount as a string: ASCII digits, an optional fraction and exponent ("2.50", "-0.25", "1e-9").
_AMOUNT = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


@dataclass(frozen=True, slots=True)
class Price:
    """A model's price in integer nano-USD per 1M tokens; `cache_write` (None: as `input`) prices the
    prompt tokens written to a cache (Anthropic's `cache_creation_input_tokens`)."""

    input: int
    output: int
    cached_input: int
    cache_write: int | None = None

    @property
    def cache_write_rate(self) -> int:
        return self.input if self.cache_write is None else self.cache_write


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one request, one meaning whatever the route or the upstream: `prompt_tokens` is
    every input token, `cached_tokens` the part of it read from a cache, `cache_write_tokens` the part
    written to one (OpenAI's prompt_tokens include cached ones; Anthropic's input_tokens exclude both)."""

    # The most tokens of one kind one request can plausibly have: a count past it is not a usage but
    # garbage, read as none (the request is then estimated). Bounded, a row's counts keep every sum
    # of them far inside a SQLite INTEGER (9.2 billion rows at the bound).
    MAX_TOKENS: ClassVar[int] = 10**9

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0


def to_nano(usd: str | int | float | Decimal) -> int:
    """Exact USD -> nano-USD. Floats go through their shortest repr (0.15 -> "0.15"), never binary.

    A string must be plain ASCII digits: "-12.5", optionally with an exponent ("1e-9"); no spaces,
    no "_" separators, no other scripts' digits. Raises ValueError for non-numbers, for more than 9
    decimal places and for more than MAX_NANO; the size is judged from the digits and the exponent
    before any arithmetic, so "1e99999999" costs no more than "1e9" to refuse.
    """
    if isinstance(usd, bool):
        raise ValueError("expected a number, got a boolean")
    try:
        value = Decimal(repr(usd)) if isinstance(usd, float) else Decimal(usd)
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"{clip(usd)} is not a number") from exc
    if not value.is_finite():
        raise ValueError(f"{clip(usd)} is not a finite number")
    if isinstance(usd, str) and not _AMOUNT.fullmatch(usd):
        raise ValueError(f"{clip(usd)} is not a number written with plain digits, like 5 or 0.25")
    # Integer arithmetic on the digits: Decimal multiplication would round past 28 digits.
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    significant = len(digits)
    while significant and digits[significant - 1] == 0:  # trailing zeros: "1.000" is 1
        significant -= 1
    if not significant:
        return 0
    exponent += len(digits) - significant
    if exponent < -9:
        raise ValueError(f"{clip(usd)} has more than 9 decimal places")
    shift: int = exponent + 9  # nano-USD are USD * 10**9; here 0 <= shift
    if significant + shift > _MAX_NANO_DIGITS:  # at least 10**19 > MAX_NANO: refuse before 10**shift
        raise ValueError(f"{clip(usd)} is too large (the most is {MAX_NANO // NANO_PER_USD} USD)")
    nano: int = int("".join(map(str, digits[:significant]))) * 10**shift
    if nano > MAX_NANO:
        raise ValueError(f"{clip(usd)} is too large (the most is {MAX_NANO // NANO_PER_USD} USD)")
    return -nano if sign else nano


def clip(value: object, limit: int = 100) -> str:
    """A caller's value as echoed in an error message: its repr, cut to about `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def format_usd(nano: int) -> str:
    """nano-USD -> a decimal USD string with no rounding ("1.50", "0.000012345", "-0.25")."""
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(nano), NANO_PER_USD)
    digits = f"{frac:09d}".rstrip("0").ljust(2, "0")
    return f"{sign}{whole}.{digits}"


def format_usd_exact(nano: Fraction) -> str:
    """An exact rational amount of nano-USD whose decimals end (a price times a decimal multiplier)
    -> its decimal USD string, every digit kept: 3/2 nano-USD is "0.0000000015". Raises ValueError
    for one that has no end (1/3)."""
    denominator, twos, fives = nano.denominator, 0, 0
    while denominator % 2 == 0:
        denominator, twos = denominator // 2, twos + 1
    while denominator % 5 == 0:
        denominator, fives = denominator // 5, fives + 1
    if denominator != 1:
        raise ValueError(f"{nano} nano-USD has no exact decimal form")
    places = max(twos, fives)
    scaled = nano.numerator * 10**places // nano.denominator  # exact: the denominator divides 10**places
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), NANO_PER_USD * 10**places)
    digits = f"{frac:0{9 + places}d}".rstrip("0").ljust(2, "0")
    return f"{sign}{whole}.{digits}"


def to_fraction(value: int | float) -> Fraction:
    """An exact multiplier from a TOML number (1.2 means 12/10, not the nearest binary float)."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return Fraction(Decimal(repr(value))) if isinstance(value, float) else Fraction(value)


def cost(usage: Usage, price: Price, multiplier: Fraction = Fraction(1)) -> int:
    """SPEC §6 and §12: ((prompt − cached − cache_write)·input + cached·cached_input
    + cache_write·cache_write_rate + completion·output) / 1e6 × multiplier.

    Each part of the prompt is priced at its own rate and none is negative: cache reads and writes
    count only up to the prompt they are part of (a usage reader refuses more; this holds anyway).
    Result in nano-USD, rounded up once (see module docstring).
    """
    prompt = max(0, usage.prompt_tokens)
    cached = min(max(0, usage.cached_tokens), prompt)
    written = min(max(0, usage.cache_write_tokens), prompt - cached)
    per_million = (prompt - cached - written) * price.input + cached * price.cached_input
    if written:
        per_million += written * price.cache_write_rate
    per_million += usage.completion_tokens * price.output
    # The same exact rational as Fraction(per_million, 1e6) * multiplier, without building Fractions
    # (two per request on the hot path): ceiling of numerator / denominator, in integers.
    numerator = per_million * multiplier.numerator
    denominator = TOKENS_PER_PRICE_UNIT * multiplier.denominator
    return -((-numerator) // denominator)
