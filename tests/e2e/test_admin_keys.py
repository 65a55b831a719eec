"""The admin API's keys, credits and channels (/admin/*), end to end: httpx against the real gateway."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import ADMIN_TOKEN, Gateway

MESSAGES = [{"role": "user", "content": "hi"}]


def test_admin_me_says_admin_for_the_admin_token(admin_gateway: Gateway) -> None:
    answer = admin_gateway.api("GET", "/admin/me")
    assert answer.status_code == 200 and answer.json() == {"role": "admin"}


def test_admin_create_credit_revoke_round_trip(admin_gateway: Gateway) -> None:
    created = admin_gateway.api("POST", "/admin/keys", json={"name": "adm-round", "credit_usd": "2.5"})
    assert created.status_code == 201, created.text
    secret = created.json()["key"]
    assert created.json()["balance_nano_usd"] == 2_500_000_000
    credit = admin_gateway.api("POST", "/admin/keys/adm-round/credit", json={"amount_usd": 1})
    assert credit.json()["balance_usd"] == "3.50"
    client = admin_gateway.client(secret)
    assert client.chat.completions.create(model="echo-1", messages=MESSAGES).choices
    revoked = admin_gateway.api("POST", "/admin/keys/adm-round/revoke")
    assert revoked.json()["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="echo-1", messages=MESSAGES)
    assert ADMIN_TOKEN not in revoked.text
