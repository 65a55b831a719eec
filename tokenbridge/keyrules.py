"""What a key may be given (name, rate limits, expiry): one rule each, shared by the CLI and the admin
API so a key one of them makes is always one the other can address.

Each rule raises ValueError with the end of a sentence ("must be ..."); the admin API turns it into
a 400 whose `param` names the field, the CLI into an error naming its argument.
"""

from __future__ import annotations

import re
import time

from tokenbridge.durations import parse_duration
from tokenbridge.money import clip

# Names go into URLs (/api/keys/{name}): keep them to characters that need no escaping.
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MAX_PER_MINUTE = 10**9  # far past any real limit, far inside a SQLite INTEGER
END_OF_TIME = 253402300799  # 9999-12-31T23:59:59Z: the last second a date shows, an int orjson can print


def key_name(value: object) -> str:
    if not isinstance(value, str) or not KEY_NAME.fullmatch(value):
        raise ValueError("must be 1 to 64 letters, digits or ._@- characters, starting with a letter or digit")
    return value


def per_minute(value: object) -> int:
    """An rpm/tpm limit: a whole number from 1 to MAX_PER_MINUTE (`5.0` too: JSON Schema's integers take it)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PER_MINUTE:
        raise ValueError(f"must be a whole number from 1 to {MAX_PER_MINUTE}")
    return value


def expiry(unix_s: float) -> float:
    """An expiry as unix seconds: after 1970, at the latest the end of the year 9999 (UTC)."""
    if not 0 < unix_s <= END_OF_TIME:
        raise ValueError(f"must be a unix time in seconds from 1 to {END_OF_TIME} (the end of 9999)")
    return float(unix_s)


def expires_in(text: str) -> float:
    """A lifetime from now ("30d") as the unix time it ends."""
    end = time.time() + parse_duration(text)
    if end > END_OF_TIME:
        raise ValueError(f"{clip(text)} ends after the year 9999")
    return end
