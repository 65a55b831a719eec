"""What a key may be given (name, rate limits, expiry): one rule each, shared by the CLI and the admin
API so a key one of them makes is always one the other can address.

Each rule raises ValueError with the end of a sentence ("must be ..."); the admin API turns it into
a 400 whose `param` names the field, the CLI into an error naming its argument.
"""

from __future__ import annotations

import ipaddress
import re
import time

from tokenbridge.durations import parse_duration
from tokenbridge.money import clip
from tokenbridge.periods import PERIODS

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


# SPEC §9: an account's login name, compared case-insensitively (accounts.name is COLLATE NOCASE).
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,64}")
ROLES = ("admin", "member")
MAX_ALLOW_IPS = 100


def account_name(value: object) -> str:
    if not isinstance(value, str) or not ACCOUNT_NAME.fullmatch(value):
        raise ValueError("must be 1 to 64 letters, digits or ._@+- characters")
    return value


def role(value: object) -> str:
    if value not in ROLES:
        raise ValueError(f"must be one of {', '.join(ROLES)}")
    return str(value)


def spend_period(value: object) -> str:
    if value not in PERIODS:
        raise ValueError(f"must be one of {', '.join(PERIODS)}")
    return str(value)


def allow_ips(value: object) -> tuple[str, ...]:
    """CIDRs (or single addresses) as a tuple of normalised network strings ("10.0.0.0/8")."""
    items = [part for part in value.split(",") if part.strip()] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or len(items) > MAX_ALLOW_IPS:
        raise ValueError(f"must be a list of at most {MAX_ALLOW_IPS} CIDRs, like 10.0.0.0/8 or 2001:db8::/32")
    networks = []
    for item in items:
        try:
            networks.append(str(ipaddress.ip_network(item.strip() if isinstance(item, str) else item, strict=False)))
        except (TypeError, ValueError):
            raise ValueError(f"has {clip(str(item))}, which is not a CIDR like 10.0.0.0/8 or 2001:db8::/32") from None
    return tuple(dict.fromkeys(networks))
