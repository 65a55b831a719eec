"""The [accounts] table (SPEC §9): defaults, every key read, and one named refusal per bad value."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from tokenbridge.accountsettings import AccountSettings
from tokenbridge.settings import ConfigError, parse_settings

MINIMAL = (
    '[[channels]]\nname = "demo"\nkind = "echo"\nmodels = ["echo-1"]\n\n[models."echo-1"]\ninput = 0\noutput = 0\n'
)


def accounts(table: str) -> AccountSettings:
    return parse_settings(MINIMAL + "\n[accounts]\n" + table, Path("config.toml"), environ={}).accounts


def test_accounts_defaults_without_the_table_are_the_spec_ones() -> None:
    settings = parse_settings(MINIMAL, Path("config.toml"), environ={})
    assert settings.accounts == AccountSettings(
        registration="closed", signup_credit=0, public_pricing=True, session_days=30, trusted_proxies=()
    )


def test_accounts_every_key_is_read() -> None:
    read = accounts(
        'registration = "invite"\nsignup_credit_usd = 0.25\npublic_pricing = false\nsession_days = 7\n'
        'trusted_proxies = ["10.0.0.0/8", "127.0.0.1", "::1"]\n'
    )
    assert read.registration == "invite"
    assert read.signup_credit == 250_000_000
    assert read.public_pricing is False
    assert read.session_days == 7
    assert read.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('registration = "public"', 'accounts.registration: must be one of "open", "invite", "closed", got "public"'),
        ("signup_credit_usd = -1", "accounts.signup_credit_usd: must be >= 0, got -1"),
        ("signup_credit_usd = 0.0000000001", "accounts.signup_credit_usd: more than 9 decimal places"),
        ('public_pricing = "yes"', "accounts.public_pricing: expected a boolean (true or false), got string"),
        ("session_days = 0", "accounts.session_days: must be >= 1, got 0"),
        ("session_days = 99999", "accounts.session_days: must be <= 3650, got 99999"),
        ('trusted_proxies = "10.0.0.0/8"', "accounts.trusted_proxies: expected an array of strings, got string"),
        ('trusted_proxies = ["10.0.0.1/8"]', 'accounts.trusted_proxies[0]: "10.0.0.1/8" has host bits set'),
        ('trusted_proxies = ["proxy.local"]', 'accounts.trusted_proxies[0]: "proxy.local" is not an IP address'),
        ("signup_credit = 1", 'accounts.signup_credit: unknown key, did you mean "signup_credit_usd"?'),
    ],
)
def test_accounts_bad_values_are_refused_naming_the_key(table: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        accounts(table + "\n")
    assert message in str(refused.value)
