"""Settling against a real SQLite file: usage no request can have, and a settle that cannot be written
(issue 11, items 2 and 3)."""

from __future__ import annotations

import pytest

from tests.conftest import Gateway

MESSAGES = [{"role": "user", "content": "hi"}]


def ask(gateway: Gateway, secret: str, model: str, *, stream: bool) -> None:
    client = gateway.client(secret)
    if stream:
        for _ in client.chat.completions.create(model=model, messages=MESSAGES, stream=True):
            pass
    else:
        client.chat.completions.create(model=model, messages=MESSAGES)


@pytest.mark.parametrize("stream", [False, True])
def test_usage_past_any_one_request_is_estimated_and_every_summary_still_answers(
    admin_gateway: Gateway, stream: bool
) -> None:
    name = f"huge-{stream}"
    secret = admin_gateway.create_key(name, credit_usd="1")
    # 9e18 fits a SQLite INTEGER, but two such rows overflow SUM(); 2**63 does not fit at all.
    for model in ("fake-usage-9e18", "fake-usage-9e18", "fake-usage-2p63"):
        ask(admin_gateway, secret, model, stream=stream)
    rows = admin_gateway.usage(name)
    assert [r["model"] for r in rows] == ["fake-usage-9e18", "fake-usage-9e18", "fake-usage-2p63"]
    assert {r["usage_source"] for r in rows} == {"estimated"} and {r["status"] for r in rows} == {200}
    assert all(0 < r["prompt_tokens"] < 1000 and 0 < r["completion_tokens"] < 1000 for r in rows)
    assert all(r["cost"] > 0 for r in rows)
    assert admin_gateway.balance(name) == admin_gateway.ledger_sum(name) == 10**9 - sum(r["cost"] for r in rows)
    assert admin_gateway.db_run(lambda db: db.reader.execute_fetchall("SELECT * FROM holds")) == []
    for path, params in [
        *(("/admin/usage/summary", {"by": by}) for by in ("model", "key", "channel", "day")),
        ("/admin/usage/series", {"bucket": "hour"}),
    ]:
        answer = admin_gateway.api("GET", path, params=params)
        assert answer.status_code == 200, (path, params, answer.text)
    answer = admin_gateway.api("GET", "/v1/dashboard/billing/usage", token=secret, params={"start_date": "2000-01-01"})
    assert answer.status_code == 200, answer.text
    for by in ("model", "key", "day"):
        done = admin_gateway.cli("usage", "--by", by)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
