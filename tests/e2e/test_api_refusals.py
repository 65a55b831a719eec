"""Issue 14, acceptance 1 (server half): a rejected request of an authenticated key gets a usage row
(its status, cost 0, the error, end_reason `refused`) and no ledger row; the holder's own views show
it and never a channel's name (issue 14 item 3), the admin's show the channel."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ADMIN_TOKEN, Gateway
from tests.e2e.people import MESSAGES, Browser, admin, member, serve_accounts
from tests.fakes.upstream import FakeUpstream


@pytest.fixture(scope="module")
def site(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_accounts(upstream, tmp_path_factory, registration="closed")


@pytest.fixture(scope="module")
def holder(site: Gateway) -> Iterator[Browser]:
    with member(site, "refused-holder", credit_usd="1") as browser:
        yield browser


def chat(site: Gateway, secret: str, **body: Any) -> httpx.Response:
    body = {"model": "fake-ok", "messages": MESSAGES, **body}
    return httpx.post(site.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"})


def rows_of(browser: Browser, key: str) -> dict[str, dict[str, Any]]:
    answer = browser.call("GET", "/api/usage", params={"key": key})
    assert answer.status_code == 200, answer.text
    return {row["request_id"]: row for row in answer.json()["data"]}


def request_id(answer: httpx.Response) -> str:
    return answer.headers["x-request-id"]


def assert_refused(row: dict[str, Any], answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status, answer.text
    assert row["status"] == status and row["end_reason"] == "refused", row
    assert row["cost_nano_usd"] == 0 and row["prompt_tokens"] == row["completion_tokens"] == 0
    assert row["error"] == answer.json()["error"]["message"]
    assert row["channel"] is None


def test_each_kind_of_refusal_gets_a_row_with_cost_0_and_no_ledger_row(site: Gateway, holder: Browser) -> None:
    secret = holder.create_key("r-main", models=["fake-ok", "echo-1"])["key"]
    ledger_before = holder.call("GET", "/api/ledger").json()["total"]
    bad_body = chat(site, secret, messages="not a list")
    no_such_model = chat(site, secret, model="no-such-model")
    not_allowed = chat(site, secret, model="fake-500")  # served, but outside the key's models
    too_dear = chat(site, secret, max_tokens=10**9)  # the hold would be far over the wallet's 1 USD
    rows = rows_of(holder, "r-main")
    assert_refused(rows[request_id(bad_body)], bad_body, 400)
    assert_refused(rows[request_id(no_such_model)], no_such_model, 404)
    assert no_such_model.json()["error"]["code"] == "model_not_found"
    assert_refused(rows[request_id(not_allowed)], not_allowed, 404)
    assert_refused(rows[request_id(too_dear)], too_dear, 429)
    assert too_dear.json()["error"]["code"] == "insufficient_quota"
    assert len(rows) == 4
    ledger = holder.call("GET", "/api/ledger").json()
    assert ledger["total"] == ledger_before  # no ledger row for any of them
    summary = holder.call("GET", "/api/usage/summary", params={"by": "key"}).json()["data"]
    assert {r["key"]: (r["requests"], r["cost_nano_usd"]) for r in summary}["r-main"] == (4, 0)


def test_rate_limit_and_ip_refusals_get_rows(site: Gateway, holder: Browser) -> None:
    limited = holder.create_key("r-rpm", rpm=1)["key"]
    assert chat(site, limited).status_code == 200
    second = chat(site, limited)
    assert second.json()["error"]["code"] == "rate_limit_exceeded"
    rows = rows_of(holder, "r-rpm")
    assert_refused(rows[request_id(second)], second, 429)
    assert [r["end_reason"] for r in rows.values()] == ["refused", "done"]
    fenced = holder.create_key("r-fenced", allow_ips=["10.0.0.0/8"])["key"]  # the test talks from 127.0.0.1
    outside = chat(site, fenced)
    assert outside.json()["error"]["code"] == "ip_not_allowed"
    outside_bad_body = chat(site, fenced, messages=7)
    fenced_rows = rows_of(holder, "r-fenced")
    assert_refused(fenced_rows[request_id(outside)], outside, 403)
    assert_refused(fenced_rows[request_id(outside_bad_body)], outside_bad_body, 400)


def test_no_row_without_a_valid_key(site: Gateway) -> None:
    before = admin(site, "GET", "/api/usage").json()["total"]
    assert chat(site, "sk-tb-not-a-key").status_code == 401
    assert chat(site, "sk-tb-not-a-key", messages=3).status_code == 400  # the body is read first
    revoked = admin(site, "POST", "/api/keys", json={"name": "r-revoked", "credit_usd": "1"}).json()
    admin(site, "POST", f"/api/keys/{revoked['id']}/revoke")
    assert chat(site, revoked["key"], messages=3).status_code == 400
    assert admin(site, "GET", "/api/usage").json()["total"] == before


def test_a_holder_never_sees_a_channel_name_the_admin_does(site: Gateway, holder: Browser) -> None:
    secret = holder.create_key("r-channels")["key"]
    client = openai.OpenAI(api_key=secret, base_url=site.url + "/v1", max_retries=0)
    client.chat.completions.create(model="fake-ok", messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="fake-500", messages=MESSAGES)  # type: ignore[arg-type]
    client.close()
    assert "channel 'fake'" not in failed.value.message and "the provider answered HTTP 500" in failed.value.message
    for reader in (holder.call, lambda m, p, **kw: site.api(m, p, token=secret, **kw)):
        answer = reader("GET", "/api/usage", params={"key": "r-channels"})
        rows = answer.json()["data"]
        assert [r["status"] for r in rows] == [502, 200]
        assert all(r["channel"] is None and r["upstream_model"] is None for r in rows)
        assert "'fake'" not in answer.text and "the provider answered HTTP 500" in rows[0]["error"]
        text = reader("GET", "/api/usage", params={"key": "r-channels", "format": "csv"}).text
        assert {row["channel"] for row in csv.DictReader(io.StringIO(text))} == {""} and "'fake'" not in text
        for params in ({"channel": "fake"}, {"by": "channel"}):
            path = "/api/usage/summary" if "by" in params else "/api/usage"
            refused = reader("GET", path, params=params)
            assert refused.status_code == 403 and refused.json()["error"]["param"] == next(iter(params))
    me = holder.call("GET", "/api/me").text
    assert "fake" not in me
    rows = admin(site, "GET", "/api/usage", params={"key": "r-channels"}).json()["data"]
    assert [r["channel"] for r in rows] == ["fake", "fake"] and "channel 'fake' answered HTTP 500" in rows[0]["error"]
    assert admin(site, "GET", "/api/usage/summary", params={"by": "channel"}).status_code == 200


def test_usage_and_ledger_page_with_a_total(site: Gateway) -> None:
    with member(site, "pager", credit_usd="1") as browser:
        secret = browser.create_key("p-key")["key"]
        ids = [request_id(chat(site, secret, model="echo-1")) for _ in range(5)]
        for n in range(3):
            admin(site, "POST", "/api/accounts/pager/credit", json={"amount_usd": "0.01", "note": f"n{n}"})
        first = browser.call("GET", "/api/usage", params={"limit": "2"}).json()
        second = browser.call("GET", "/api/usage", params={"limit": "2", "offset": "2"}).json()
        last = browser.call("GET", "/api/usage", params={"limit": "2", "offset": "4"}).json()
        assert first["total"] == second["total"] == last["total"] == 5
        assert (first["has_more"], second["has_more"], last["has_more"]) == (True, True, False)
        seen = [r["request_id"] for page in (first, second, last) for r in page["data"]]
        assert seen == list(reversed(ids))
        bad = browser.call("GET", "/api/usage", params={"offset": "-1"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "offset"
        page = browser.call("GET", "/api/ledger", params={"limit": "3"}).json()
        total = page["total"]
        assert total == 1 + 5 + 3 and page["has_more"] is True  # the opening credit, 5 charges, 3 credits
        rest = browser.call("GET", "/api/ledger", params={"limit": "10", "before": str(page["next_before"])}).json()
        assert rest["has_more"] is False and rest["next_before"] is None
        assert len(page["data"]) + len(rest["data"]) == total
        assert (
            sum(r["amount_nano_usd"] for r in [*page["data"], *rest["data"]])
            == browser.call("GET", "/api/me").json()["account"]["balance_nano_usd"]
        )


def test_the_admin_token_is_no_member(site: Gateway) -> None:
    rows = httpx.get(site.url + "/api/usage", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()["data"]
    assert any(r["channel"] == "fake" for r in rows)
