"""The `[accounts]` table of config.toml (SPEC §9): who may sign up, with what credit, how long a
session lasts, whether prices are public, and which proxies' forwarding headers are believed.

Read once per config version by settings.py into a frozen `AccountSettings`; every bad value is a
`ConfigError` naming `accounts.<key>` and what is wrong, as for the other tables.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tokenbridge.tomlread import Table, quoted

__all__ = ["ACCOUNT_KEYS", "REGISTRATION_MODES", "AccountSettings", "Network", "read_accounts"]

REGISTRATION_MODES = ("open", "invite", "closed")
ACCOUNT_KEYS = ("registration", "signup_credit_usd", "public_pricing", "session_days", "trusted_proxies")
MAX_SESSION_DAYS = 3650  # ten years: longer is no session but a password written down

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """The `[accounts]` table."""

    registration: str = "closed"  # "open": anyone; "invite": with an unused code; "closed": admins create accounts
    signup_credit: int = 0  # nano-USD a new account gets, as one ledger row; TOML `signup_credit_usd`
    public_pricing: bool = True  # GET /api/pricing without signing in
    session_days: int = 30  # a sign-in's cookie and its server-side session last this long
    trusted_proxies: tuple[Network, ...] = ()  # peers whose X-Forwarded-For / -Proto are believed (clientaddr.py)


def read_accounts(table: Table) -> AccountSettings:
    table.refuse_unknown(ACCOUNT_KEYS)
    defaults = AccountSettings()
    return AccountSettings(
        registration=table.string("registration", defaults.registration, choices=REGISTRATION_MODES),
        signup_credit=table.nano_usd("signup_credit_usd", 0),
        public_pricing=table.boolean("public_pricing", defaults.public_pricing),
        session_days=table.integer("session_days", defaults.session_days, minimum=1, maximum=MAX_SESSION_DAYS),
        trusted_proxies=_read_networks(table, "trusted_proxies"),
    )


def _read_networks(table: Table, key: str) -> tuple[Network, ...]:
    """CIDRs ("10.0.0.0/8", "::1/128") or single addresses ("127.0.0.1"), each checked."""
    networks = []
    for i, text in enumerate(table.strings(key)):
        try:
            networks.append(ipaddress.ip_network(text.strip()))
        except ValueError as exc:
            reason = "has host bits set" if "host bits" in str(exc) else "is not an IP address or CIDR"
            raise table.error(
                f"{key}[{i}]", f'{quoted(text)} {reason} (write e.g. "10.0.0.0/8" or "127.0.0.1")'
            ) from exc
    return tuple(networks)
