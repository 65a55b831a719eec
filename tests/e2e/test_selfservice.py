"""A key holder's own figures on /v1/ (`/v1/me`, the legacy billing routes third-party clients read),
with the admin API off (no admin_token): they work with the key alone, and agree with the CLI."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_TOKEN, Gateway
from tests.e2e.test_chat import expected_cost
from tokenbridge.api.selfservice import cents, usd

MESSAGES = [{"role": "user", "content": "hi"}]


def test_billing_subscription_minus_usage_is_the_balance_the_cli_shows(gateway: Gateway) -> None:
    secret = gateway.create_key("self-billing", credit_usd="3.123456789")
    gateway.cli("credit", "self-billing", "-0.5")
    client = gateway.client(secret)
    for model in ("fake-ok", "echo-1", "fake-ok"):
        client.chat.completions.create(model=model, messages=MESSAGES)
    subscription = gateway.api("GET", "/v1/dashboard/billing/subscription", token=secret)
    usage = gateway.api("GET", "/v1/dashboard/billing/usage", token=secret, params={"start_date": "2000-01-01"})
    assert subscription.status_code == usage.status_code == 200
    sub, used = subscription.json(), usage.json()
    assert sub["object"] == "billing_subscription" and used["object"] == "list"
    [listed] = [k for k in orjson.loads(gateway.cli("keys", "list", "--json").stdout) if k["name"] == "self-billing"]
    # What ChatGPT-Next-Web and friends show as the balance, computed exactly from the JSON numbers:
    shown = Decimal(repr(sub["hard_limit_usd"])) - Decimal(repr(used["total_usage"])) / 100
    assert shown == Decimal(listed["balance_usd"]) == Decimal(listed["balance_nano_usd"]) / 10**9
    assert listed["balance_nano_usd"] == gateway.balance("self-billing") == gateway.ledger_sum("self-billing")
    daily_cents = sum(Decimal(repr(i["cost"])) for day in used["daily_costs"] for i in day["line_items"])
    assert daily_cents == Decimal(repr(used["total_usage"]))  # the range covers the key's whole life
    assert {i["name"] for day in used["daily_costs"] for i in day["line_items"]} == {"fake-ok", "echo-1"}
    assert secret not in subscription.text + usage.text


def test_billing_usage_daily_costs_honour_the_dates_total_usage_stays_lifetime(gateway: Gateway) -> None:
    secret = gateway.create_key("self-dates", credit_usd="1")
    gateway.client(secret).chat.completions.create(model="fake-ok", messages=MESSAGES)
    past = gateway.api(
        "GET",
        "/v1/dashboard/billing/usage",
        token=secret,
        params={"start_date": "2001-01-01", "end_date": "2001-02-01"},
    ).json()
    assert past["daily_costs"] == [] and Decimal(repr(past["total_usage"])) == Decimal(expected_cost(12, 3)) / 10**7
    today = dt.datetime.now(dt.UTC).date()
    [day] = gateway.api(
        "GET", "/v1/dashboard/billing/usage", token=secret, params={"start_date": today.isoformat()}
    ).json()["daily_costs"]
    assert day["timestamp"] == dt.datetime(today.year, today.month, today.day, tzinfo=dt.UTC).timestamp()
    bad = gateway.api("GET", "/v1/dashboard/billing/usage", token=secret, params={"start_date": "May 1st"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "start_date"


def test_me_shows_balance_spent_and_holds_matching_the_ledger(gateway: Gateway) -> None:
    secret = gateway.create_key("self-me", credit_usd="2")
    gateway.client(secret).chat.completions.create(model="fake-ok", messages=MESSAGES)
    assert gateway.holds_returned() == 0  # the spare room a $2 wallet's chunk had drawn went back
    me = gateway.api("GET", "/v1/me", token=secret).json()
    cost = expected_cost(12, 3)
    assert me["name"] == "self-me" and me["status"] == "active" and me["held_nano_usd"] == 0
    assert me["spent_nano_usd"] == cost and me["balance_nano_usd"] == 2 * 10**9 - cost == gateway.ledger_sum("self-me")
    assert secret not in orjson.dumps(me).decode() and me["prefix"] == secret[:12]


def test_self_service_refuses_missing_and_wrong_keys(gateway: Gateway) -> None:
    for path in ("/v1/me", "/v1/dashboard/billing/subscription", "/v1/dashboard/billing/usage"):
        for token in (None, "sk-tb-nope", ADMIN_TOKEN):
            answer = gateway.api("GET", path, token=token)
            assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key", (path, token)


def test_without_admin_token_nobody_is_the_admin_but_keys_still_read_their_own(gateway: Gateway) -> None:
    for token in (ADMIN_TOKEN, None):
        answer = gateway.api("GET", "/api/keys", token=token)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"
    secret = gateway.create_key("self-holder-off")
    me = gateway.api("GET", "/api/me", token=secret).json()
    assert me["role"] == "key" and me["key"]["name"] == "self-holder-off"


@settings(max_examples=300)
@given(st.integers(0, 10**15 - 1))
def test_billing_figures_carry_exactly_the_decimals_of_their_nano_values(nano: int) -> None:
    # What the subscription docstring and the README promise: below 15 significant digits (1,000,000 USD)
    # the JSON numbers are the exact decimals, so hard_limit_usd - total_usage / 100 is the balance exactly
    # in decimal. In float arithmetic it is not (0.3 - 20.0 / 100 != 0.1), which they say too.
    assert Decimal(repr(usd(nano))) == Decimal(nano) / 10**9
    assert Decimal(repr(cents(nano))) == Decimal(nano) / 10**7
    assert usd(300_000_000) - cents(200_000_000) / 100 != 0.1  # the documented float limit
