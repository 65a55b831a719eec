"""The account API's auth, keys and credits (/api/me, /api/keys*, /api/accounts/{name}/credit), end to
end: httpx against the real gateway, the openai SDK where an OpenAI route shows the effect of a write."""

from __future__ import annotations

import time

import openai
import pytest

from tests.conftest import ADMIN_TOKEN, Gateway
from tests.e2e.test_chat import expected_cost

MESSAGES = [{"role": "user", "content": "hi"}]

# Every route that needs a token, with a body a write would take ({id}: a key's id, {name}: its account).
ROUTES = [
    ("GET", "/api/me", None),
    ("GET", "/api/keys", None),
    ("POST", "/api/keys", {"name": "never-made"}),
    ("GET", "/api/keys/{id}", None),
    ("PATCH", "/api/keys/{id}", {"rpm": 5}),
    ("POST", "/api/keys/{id}/revoke", None),
    ("POST", "/api/accounts/{name}/credit", {"amount_usd": "1"}),
    ("GET", "/api/ledger", None),
    ("GET", "/api/accounts", None),
    ("GET", "/api/codes", None),
    ("POST", "/api/codes", {"amount_usd": "1"}),
    ("GET", "/api/usage", None),
    ("GET", "/api/usage/summary", None),
    ("GET", "/api/usage/series", None),
    ("GET", "/api/channels", None),
]


def create(gateway: Gateway, name: str, **fields: object) -> str:
    answer = gateway.api("POST", "/api/keys", json={"name": name, **fields})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def key_id(gateway: Gateway, name: str) -> str:
    """The id of the key `name` that the admin made (under an account of the same name)."""
    [key] = gateway.api("GET", f"/api/keys?account={name}").json()["data"]
    return str(key["id"])


def on(path: str, gateway: Gateway, name: str) -> str:
    return path.replace("{id}", key_id(gateway, name)).replace("{name}", name)


def error_of(answer: object) -> tuple[int, str, str | None]:
    assert hasattr(answer, "json") and hasattr(answer, "status_code")
    error = answer.json()["error"]
    return answer.status_code, error["code"], error["param"]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_account_api_route_refuses_missing_wrong_and_revoked_tokens(
    admin_gateway: Gateway, method: str, path: str, body: object
) -> None:
    name = f"revoked-{method}-{path.replace('/', '-').replace('{', '').replace('}', '')}"
    revoked = create(admin_gateway, name)
    admin_gateway.api("POST", f"/api/keys/{key_id(admin_gateway, name)}/revoke")
    for token in (None, ADMIN_TOKEN + "x", "sk-tb-" + "x" * 40, revoked):
        answer = admin_gateway.api(method, on(path, admin_gateway, name), token=token, json=body)
        assert error_of(answer)[:2] == (401, "invalid_api_key"), (token, answer.text)
        assert ADMIN_TOKEN not in answer.text and revoked not in answer.text


def test_me_says_admin_or_key_with_the_key(admin_gateway: Gateway) -> None:
    assert admin_gateway.api("GET", "/api/me").json() == {"role": "admin"}
    secret = create(admin_gateway, "me-holder", credit_usd="0.5")
    me = admin_gateway.api("GET", "/api/me", token=secret).json()
    assert (
        me["role"] == "key"
        and me["key"]["account"] == "me-holder"
        and me["key"]["name"] == "me-holder"
        and me["key"]["balance_usd"] == "0.50"
    )


def test_create_answers_the_secret_once_and_the_key_works_at_once(admin_gateway: Gateway) -> None:
    answer = admin_gateway.api(
        "POST",
        "/api/keys",
        json={"name": "made", "credit_usd": 2.5, "group": "gold", "models": ["echo-1"], "rpm": 7, "expires_in": "30d"},
    )
    assert answer.status_code == 201 and answer.headers["cache-control"] == "no-store"
    made = answer.json()
    secret = made.pop("key")
    assert secret.startswith("sk-tb-") and made["prefix"] == secret[:12]
    assert made["balance_nano_usd"] == 2_500_000_000 and made["group"] == "gold" and made["models"] == ["echo-1"]
    assert made["rpm"] == 7 and made["tpm"] is None and made["status"] == "active"
    assert 29 * 86400 < made["expires_at"] - time.time() <= 30 * 86400 and made["created_at"] <= time.time()
    assert admin_gateway.client(secret).chat.completions.create(model="echo-1", messages=MESSAGES).choices
    listed = admin_gateway.api("GET", "/api/keys")
    [row] = [k for k in listed.json()["data"] if k["name"] == "made"]
    assert row == admin_gateway.api("GET", f"/api/keys/{made['id']}").json()
    assert row["balance_nano_usd"] == admin_gateway.balance("made") < made["balance_nano_usd"]  # the echo was billed
    drop = ("balance_usd", "balance_nano_usd")
    assert {k: v for k, v in row.items() if k not in drop} == {k: v for k, v in made.items() if k not in drop}
    assert secret not in listed.text


def test_create_refuses_bad_bodies_naming_the_field(admin_gateway: Gateway) -> None:
    cases = [
        ({}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": 5}, "name"),
        ({"name": "ok-1", "credit_usd": "lots"}, "credit_usd"),
        ({"name": "ok-1", "credit_usd": "0.0000000001"}, "credit_usd"),
        ({"name": "ok-1", "credit_usd": "-1"}, "credit_usd"),
        ({"name": "ok-1", "credit_usd": True}, "credit_usd"),
        ({"name": "ok-1", "group": "platinum"}, "group"),
        ({"name": "ok-1", "models": ["gpt-9"]}, "models"),
        ({"name": "ok-1", "models": "echo-1"}, "models"),
        ({"name": "ok-1", "expires_in": "soon"}, "expires_in"),
        ({"name": "ok-1", "rpm": 0}, "rpm"),
        ({"name": "ok-1", "tpm": "10"}, "tpm"),
        ({"name": "ok-1", "colour": "blue"}, "colour"),
    ]
    for body, param in cases:
        answer = admin_gateway.api("POST", "/api/keys", json=body)
        assert error_of(answer) == (400, "invalid_request_error", param), (body, answer.text)
    for raw in (b"{not json", b"[1, 2]", b'"name"'):
        answer = admin_gateway.api("POST", "/api/keys", content=raw, headers={"content-type": "application/json"})
        assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request_error", raw
    assert "ok-1" not in admin_gateway.api("GET", "/api/keys").text


def test_out_of_range_limits_expiries_and_amounts_are_400_naming_the_field(admin_gateway: Gateway) -> None:
    # Each of these was a 500 (OverflowError binding a SQLite INTEGER or making a float, orjson refusing an
    # int past 64 bits) or was taken: "5_000", full-width digits and spaces as amounts, an expiry of 1e308.
    secret = create(admin_gateway, "bounded", credit_usd="1")
    creates = [
        ({"rpm": 2**63}, "rpm"),
        ({"tpm": 10**9 + 1}, "tpm"),
        ({"expires_in": "9" * 400 + "d"}, "expires_in"),
        ({"expires_in": "999999999999999d"}, "expires_in"),
        ({"expires_in": "9999999999d"}, "expires_in"),  # a duration, but it ends after the year 9999
        ({"expires_in": "\u0665d"}, "expires_in"),
        ({"credit_usd": "5_000"}, "credit_usd"),
        ({"credit_usd": "\uff11"}, "credit_usd"),
        ({"credit_usd": " 5 "}, "credit_usd"),
        ({"credit_usd": "1e99999999"}, "credit_usd"),
    ]
    for body, param in creates:
        answer = admin_gateway.api("POST", "/api/keys", json={"name": "never-bounded", **body})
        assert error_of(answer) == (400, "invalid_request_error", param), (body, answer.text)
    patches = [({"rpm": 2**63}, "rpm"), ({"tpm": 2**64 - 1}, "tpm"), ({"expires_at": 1e308}, "expires_at"),
               ({"expires_at": 2**64 - 1}, "expires_at"), ({"expires_at": 253402300800}, "expires_at")]  # fmt: skip
    for body, param in patches:
        answer = admin_gateway.api("PATCH", f"/api/keys/{key_id(admin_gateway, 'bounded')}", json=body)
        assert error_of(answer) == (400, "invalid_request_error", param), (body, answer.text)
    for amount in ("5_000", "\uff11", " 5 ", "1" * 5000):
        answer = admin_gateway.api("POST", "/api/accounts/bounded/credit", json={"amount_usd": amount})
        assert error_of(answer) == (400, "invalid_request_error", "amount_usd"), (amount, answer.text)
        assert len(answer.json()["error"]["message"]) < 300  # the input is echoed cut short
    assert admin_gateway.balance("bounded") == admin_gateway.ledger_sum("bounded") == 10**9
    assert "never-bounded" not in admin_gateway.api("GET", "/api/keys").text
    bounded = f"/api/keys/{key_id(admin_gateway, 'bounded')}"
    edge = admin_gateway.api("PATCH", bounded, json={"rpm": 10**9, "expires_at": 253402300799})
    assert edge.status_code == 200 and edge.json()["rpm"] == 10**9, edge.text
    subscription = admin_gateway.api("GET", "/v1/dashboard/billing/subscription", token=secret)
    assert subscription.status_code == 200 and subscription.json()["access_until"] == 253402300799
    missing = admin_gateway.api("GET", "/api/keys/" + "a" * 10000)
    assert error_of(missing)[:2] == (404, "key_not_found") and len(missing.json()["error"]["message"]) < 200
    missing = admin_gateway.api("POST", "/api/accounts/" + "a" * 10000 + "/credit", json={"amount_usd": "1"})
    assert error_of(missing)[:2] == (404, "account_not_found") and len(missing.json()["error"]["message"]) < 200


def test_create_with_a_taken_name_is_409_key_exists_within_the_account(admin_gateway: Gateway) -> None:
    create(admin_gateway, "twice")
    assert error_of(admin_gateway.api("POST", "/api/keys", json={"name": "twice"})) == (409, "key_exists", "name")
    create(admin_gateway, "twice", account="another-owner")  # another account may have a key of that name
    owners = sorted(k["account"] for k in admin_gateway.api("GET", "/api/keys").json()["data"] if k["name"] == "twice")
    assert owners == ["another-owner", "twice"]


def test_unknown_key_is_404_key_not_found_on_every_key_route(admin_gateway: Gateway) -> None:
    for method, path, body in [
        ("GET", "/api/keys/key_nobody", None),
        ("PATCH", "/api/keys/key_nobody", {"rpm": 1}),
        ("POST", "/api/keys/key_nobody/revoke", None),
    ]:
        assert error_of(admin_gateway.api(method, path, json=body))[:2] == (404, "key_not_found"), (method, path)
    answer = admin_gateway.api("POST", "/api/accounts/nobody/credit", json={"amount_usd": "1"})
    assert error_of(answer)[:2] == (404, "account_not_found")


def test_patch_edits_limits_and_the_next_request_obeys_them(admin_gateway: Gateway) -> None:
    secret = create(admin_gateway, "edited", credit_usd="1")
    client = admin_gateway.client(secret)
    assert client.chat.completions.create(model="fake-ok", messages=MESSAGES).choices
    path = f"/api/keys/{key_id(admin_gateway, 'edited')}"
    edited = admin_gateway.api("PATCH", path, json={"models": ["echo-1"], "tpm": 99})
    assert edited.status_code == 200, edited.text
    assert edited.json()["models"] == ["echo-1"] and edited.json()["tpm"] == 99
    assert admin_gateway.api("PATCH", "/api/accounts/edited", json={"group": "gold"}).json()["group"] == "gold"
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="fake-ok", messages=MESSAGES)
    assert info.value.code == "model_not_found"
    cleared = admin_gateway.api("PATCH", path, json={"models": [], "tpm": None}).json()
    assert cleared["models"] == [] and cleared["tpm"] is None and cleared["group"] == "gold"
    assert client.chat.completions.create(model="fake-ok", messages=MESSAGES).choices
    past = admin_gateway.api("PATCH", path, json={"expires_at": time.time() - 1}).json()
    assert past["status"] == "expired"
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="echo-1", messages=MESSAGES)
    assert admin_gateway.api("PATCH", path, json={"expires_at": None}).json()["status"] == "active"
    assert client.chat.completions.create(model="echo-1", messages=MESSAGES).choices
    assert admin_gateway.api("PATCH", path, json={"status": "disabled"}).json()["status"] == "disabled"
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="echo-1", messages=MESSAGES)
    assert admin_gateway.api("PATCH", path, json={"status": "active"}).json()["status"] == "active"
    assert client.chat.completions.create(model="echo-1", messages=MESSAGES).choices
    for body, param in [({"rpm": -1}, "rpm"), ({"group": "gold"}, "group"), ({"expires_at": "never"}, "expires_at"),
                        ({"name": "renamed"}, "name"), ({"status": "revoked"}, "status"),
                        ({"spend_limit_usd": "0"}, "spend_limit_usd"),
                        ({"spend_limit_period": "week"}, "spend_limit_period")]:  # fmt: skip
        assert error_of(admin_gateway.api("PATCH", path, json=body)) == (
            400,
            "invalid_request_error",
            param,
        )


def test_revoke_refuses_the_very_next_request(admin_gateway: Gateway) -> None:
    secret = create(admin_gateway, "revoked-now", credit_usd="1")
    client = admin_gateway.client(secret)
    assert client.chat.completions.create(model="echo-1", messages=MESSAGES).choices  # now cached by auth
    revoked = admin_gateway.api("POST", f"/api/keys/{key_id(admin_gateway, 'revoked-now')}/revoke")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="echo-1", messages=MESSAGES)
    assert info.value.code == "invalid_api_key"
    assert admin_gateway.api("GET", "/api/me", token=secret).status_code == 401
    enabled = admin_gateway.api("PATCH", f"/api/keys/{revoked.json()['id']}", json={"status": "active"})
    assert error_of(enabled)[:2] == (403, "permission_denied")  # revoked for good


def test_credit_tops_up_corrects_and_unblocks_a_broke_key_at_once(admin_gateway: Gateway) -> None:
    secret = create(admin_gateway, "topped")
    client = admin_gateway.client(secret)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="fake-ok", messages=MESSAGES)
    credited = admin_gateway.api("POST", "/api/accounts/topped/credit", json={"amount_usd": "0.25", "note": "welcome"})
    assert credited.json() == {
        "name": "topped",
        "amount_usd": "0.25",
        "amount_nano_usd": 250_000_000,
        "balance_usd": "0.25",
        "balance_nano_usd": 250_000_000,
    }
    assert client.chat.completions.create(model="fake-ok", messages=MESSAGES).choices
    corrected = admin_gateway.api("POST", "/api/accounts/topped/credit", json={"amount_usd": -0.05}).json()
    assert corrected["amount_nano_usd"] == -50_000_000
    assert corrected["balance_nano_usd"] == 200_000_000 - expected_cost(12, 3) == admin_gateway.ledger_sum("topped")
    for body, param in [({}, "amount_usd"), ({"amount_usd": "0"}, "amount_usd"), ({"amount_usd": [1]}, "amount_usd"),
                        ({"amount_usd": "1", "note": 7}, "note")]:  # fmt: skip
        answer = admin_gateway.api("POST", "/api/accounts/topped/credit", json=body)
        assert error_of(answer) == (400, "invalid_request_error", param), body


def test_credit_past_the_balance_range_is_409_and_books_nothing(admin_gateway: Gateway) -> None:
    # Two maximal credits used to store a REAL balance (every later read of the key a 500); two maximal
    # corrections a 500 after the commit. Now nothing is booked, and the caller is told which field.
    create(admin_gateway, "range-rich", credit_usd="9223372036")
    create(admin_gateway, "range-poor")
    for name, amount in [("range-rich", "9223372036"), ("range-rich", "0.854775808"), ("range-poor", "-9223372036")]:
        if name == "range-poor":
            assert (
                admin_gateway.api("POST", f"/api/accounts/{name}/credit", json={"amount_usd": amount}).status_code
                == 200
            )
        before = admin_gateway.balance(name)
        answer = admin_gateway.api("POST", f"/api/accounts/{name}/credit", json={"amount_usd": amount})
        # 409: the key's state refuses it, not the field (the same amount is fine on another key).
        assert error_of(answer) == (409, "balance_out_of_range", "amount_usd"), answer.text
        assert "9223372036.854775807" in answer.json()["error"]["message"]
        assert admin_gateway.balance(name) == admin_gateway.ledger_sum(name) == before
        assert admin_gateway.api("GET", f"/api/keys/{key_id(admin_gateway, name)}").json()["balance_nano_usd"] == before
    assert admin_gateway.api("GET", "/api/keys").status_code == 200
    edge = admin_gateway.api("POST", "/api/accounts/range-rich/credit", json={"amount_usd": "0.854775807"})
    assert edge.json()["balance_nano_usd"] == 2**63 - 1 == admin_gateway.ledger_sum("range-rich")
    refused = admin_gateway.cli("credit", "range-rich", "0.000000001")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "nothing was booked" in refused.stderr and admin_gateway.balance("range-rich") == 2**63 - 1


def test_holder_reads_only_its_own_key_and_cannot_write(admin_gateway: Gateway) -> None:
    mine = create(admin_gateway, "holder-mine", credit_usd="1")
    create(admin_gateway, "holder-other")
    listed = admin_gateway.api("GET", "/api/keys", token=mine).json()["data"]
    assert [k["name"] for k in listed] == ["holder-mine"]
    mine_id, other_id = key_id(admin_gateway, "holder-mine"), key_id(admin_gateway, "holder-other")
    assert admin_gateway.api("GET", f"/api/keys/{mine_id}", token=mine).json()["name"] == "holder-mine"
    other = admin_gateway.api("GET", f"/api/keys/{other_id}", token=mine)
    missing = admin_gateway.api("GET", "/api/keys/key_nobodyatall0000", token=mine)
    assert error_of(other) == error_of(missing) == (404, "key_not_found", "id")
    hidden = other.json()["error"]["message"].replace(other_id, "?")
    assert hidden == missing.json()["error"]["message"].replace("key_nobodyatall0000", "?")  # nothing tells them apart
    reads = {"/api/me", "/api/keys", "/api/keys/{id}", "/api/usage", "/api/usage/summary", "/api/usage/series"}
    for method, path, body in ROUTES:
        if method == "GET" and path in reads:
            continue
        for target in ("holder-mine", "holder-other"):
            answer = admin_gateway.api(method, on(path, admin_gateway, target), token=mine, json=body)
            assert error_of(answer)[:2] == (403, "permission_denied"), (method, path, answer.text)
            assert answer.json()["error"]["type"] == "permission_error"
    assert (
        admin_gateway.balance("holder-mine") == 1_000_000_000
        and "never-made" not in admin_gateway.api("GET", "/api/keys").text
    )
