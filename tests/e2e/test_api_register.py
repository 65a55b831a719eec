"""Issue 13, acceptance 1: register (open / invite / closed) -> sign in -> create a key -> the openai SDK
calls /v1/chat/completions -> the usage row and the wallet's charge show on /api/usage and /api/me."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Gateway
from tests.e2e.people import MESSAGES, PASSWORD, Browser, admin, serve_accounts
from tests.fakes.upstream import FakeUpstream
from tokenbridge.money import to_nano


@pytest.fixture(scope="module")
def open_gateway(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_accounts(upstream, tmp_path_factory, registration="open", signup_credit_usd=2)


@pytest.fixture(scope="module")
def invite_gateway(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_accounts(upstream, tmp_path_factory, registration="invite", signup_credit_usd=0.5)


@pytest.fixture(scope="module")
def closed_gateway(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_accounts(upstream, tmp_path_factory)  # registration defaults to "closed"


def spend_and_see_it(gateway: Gateway, browser: Browser, opening_nano: int) -> None:
    """Sign in again, make a key, chat with the openai SDK, then find the row and the charge."""
    browser.http.cookies.clear()
    me = browser.call("GET", "/api/me")
    assert me.status_code == 401  # signed out without the cookie
    signed_in = browser.sign_in()
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["account"]["balance_nano_usd"] == opening_nano
    key = browser.create_key("laptop")
    assert key["account"] == browser.name and key["key"].startswith("sk-tb-")
    answer = gateway.client(key["key"]).chat.completions.create(model="fake-ok", messages=MESSAGES)
    assert answer.choices[0].message.content
    rows = browser.call("GET", "/api/usage").json()["data"]
    assert [(r["key"], r["model"], r["status"]) for r in rows] == [("laptop", "fake-ok", 200)]
    cost = rows[0]["cost_nano_usd"]
    assert cost > 0
    assert gateway.holds_returned() == 0  # the key's chunk went back once idle (purse.py)
    account = browser.call("GET", "/api/me").json()["account"]
    assert account["balance_nano_usd"] == opening_nano - cost
    assert account["spent_nano_usd"] == cost and account["held_nano_usd"] == 0
    ledger = browser.call("GET", "/api/ledger").json()["data"]
    assert ledger[0]["kind"] == "charge" and ledger[0]["amount_nano_usd"] == -cost and ledger[0]["key"] == "laptop"
    assert sum(row["amount_nano_usd"] for row in ledger) == account["balance_nano_usd"]


def test_register_open_signs_in_and_a_new_key_spends_from_the_wallet(open_gateway: Gateway) -> None:
    with Browser(open_gateway) as browser:
        made = browser.register("Alice.Open")
        assert made.status_code == 201, made.text
        assert made.json()["role"] == "member"
        assert made.json()["account"]["balance_usd"] == "2.00"  # signup_credit_usd, one ledger row
        assert "tb_session=" in made.headers["set-cookie"]
        assert browser.call("GET", "/api/me").json()["account"]["name"] == "Alice.Open"  # signed in at once
        ledger = browser.call("GET", "/api/ledger").json()["data"]
        assert [(r["kind"], r["amount_usd"]) for r in ledger] == [("credit", "2.00")]
        spend_and_see_it(open_gateway, browser, to_nano("2"))
    with Browser(open_gateway) as again:
        taken = again.register("alice.open")  # names are case-insensitive
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "account_exists"


def test_register_refuses_bad_names_and_short_passwords_naming_the_field(open_gateway: Gateway) -> None:
    with Browser(open_gateway) as browser:
        for body, param in [
            ({"name": "has space", "password": PASSWORD}, "name"),
            ({"name": "x" * 65, "password": PASSWORD}, "name"),
            ({"name": "shorty", "password": "seven77"}, "password"),
            ({"name": "extra", "password": PASSWORD, "role": "admin"}, "role"),
        ]:
            refused = browser.call("POST", "/api/register", json=body)
            assert refused.status_code == 400 and refused.json()["error"]["param"] == param, refused.text
            assert "set-cookie" not in refused.headers


def test_register_invite_needs_an_unused_code_whose_amount_goes_to_the_wallet(invite_gateway: Gateway) -> None:
    made = admin(invite_gateway, "POST", "/api/codes", json={"amount_usd": "3", "count": 1, "note": "invite"})
    assert made.status_code == 201, made.text
    code = made.json()["data"][0]["code"]
    with Browser(invite_gateway) as browser:
        for extra in ({}, {"invite_code": "tbc-NOTACODE"}):
            refused = browser.register("bob", **extra)
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_code", refused.text
        assert admin(invite_gateway, "GET", "/api/accounts?search=bob").json()["data"] == []  # nothing half-made
        joined = browser.register("bob", invite_code=code)
        assert joined.status_code == 201, joined.text
        assert joined.json()["account"]["balance_usd"] == "3.50"  # the code's 3 + signup_credit_usd 0.5
        kinds = sorted(r["kind"] for r in browser.call("GET", "/api/ledger").json()["data"])
        assert kinds == ["credit", "redeem"]
        spend_and_see_it(invite_gateway, browser, to_nano("3.5"))
    with Browser(invite_gateway) as second:
        reused = second.register("carol", invite_code=code)
        assert reused.status_code == 400 and reused.json()["error"]["code"] == "invalid_code"
    codes = admin(invite_gateway, "GET", "/api/codes").json()["data"]
    assert [(c["status"], c["redeemed_by"]) for c in codes] == [("used", "bob")]


def test_register_closed_is_403_registration_closed(closed_gateway: Gateway) -> None:
    with Browser(closed_gateway) as browser:
        refused = browser.register("dave")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "registration_closed"
        assert "set-cookie" not in refused.headers
    assert admin(closed_gateway, "GET", "/api/accounts?search=dave").json()["data"] == []


def test_an_admin_account_signed_in_reaches_everything_and_its_own_wallet(closed_gateway: Gateway) -> None:
    made = admin(closed_gateway, "POST", "/api/accounts", json={"name": "boss", "role": "admin", "credit_usd": "1"})
    password = made.json()["password"]  # none was given: one is generated, shown this once
    assert made.status_code == 201 and len(password) >= 20
    assert "password" not in admin(closed_gateway, "GET", "/api/accounts/boss").json()
    admin(closed_gateway, "POST", "/api/accounts", json={"name": "worker", "password": PASSWORD})
    with Browser(closed_gateway) as boss:
        assert boss.sign_in("boss", password).json()["role"] == "admin"
        own = boss.create_key("boss-key")
        assert own["account"] == "boss"  # no `account`: the signed-in admin's own
        theirs = boss.create_key("for-worker", account="worker")
        assert theirs["account"] == "worker"
        assert [r["kind"] for r in boss.call("GET", "/api/ledger").json()["data"]] == ["credit"]  # its own wallet
        assert boss.call("GET", "/api/ledger", params={"account": "worker"}).json()["data"] == []
        names = {a["name"] for a in boss.call("GET", "/api/accounts").json()["data"]}
        assert {"boss", "worker"} <= names
        assert {k["name"] for k in boss.call("GET", "/api/keys").json()["data"]} >= {"boss-key", "for-worker"}
    with Browser(closed_gateway) as worker:
        worker.sign_in("worker")
        assert [k["name"] for k in worker.call("GET", "/api/keys").json()["data"]] == ["for-worker"]
        assert worker.call("GET", "/api/accounts").status_code == 403
        assert worker.call("GET", "/api/ledger", params={"account": "boss"}).status_code == 403
        assert worker.call("GET", f"/api/keys/{own['id']}").status_code == 404  # another account's key
        assert worker.call("POST", "/api/keys", json={"name": "x", "credit_usd": "5"}).status_code == 400
