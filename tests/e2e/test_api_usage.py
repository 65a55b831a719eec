"""The account API's usage rows, sums and series and the channels view, checked against known
requests through the echo channel and the fake upstream."""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from typing import Any

import openai
import pytest

from tests.conftest import UPSTREAM_SECRET, Gateway
from tests.e2e.people import member
from tests.e2e.test_chat import expected_cost
from tokenbridge.report import USAGE_FIELDS
from tokenbridge.store.db import Database
from tokenbridge.store.keys import get_key_by_name
from tokenbridge.store.ledger import settle_hold
from tokenbridge.store.usage import UsageRow

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def traffic(admin_gateway: Gateway) -> Gateway:
    """Known requests: key u-one 2x fake-ok + 1x echo-1; key u-two 1x echo-1 (streamed)."""
    one = admin_gateway.client(admin_gateway.create_key("u-one", credit_usd="1"))
    two = admin_gateway.client(admin_gateway.create_key("u-two", credit_usd="1"))
    one.chat.completions.create(model="fake-ok", messages=MESSAGES)
    one.chat.completions.create(model="echo-1", messages=MESSAGES)
    one.chat.completions.create(model="fake-ok", messages=MESSAGES)
    for _ in two.chat.completions.create(model="echo-1", messages=MESSAGES, stream=True):
        pass
    return admin_gateway


def get(gateway: Gateway, path: str, token: str | None = None, **params: Any) -> Any:
    answer = (
        gateway.api("GET", path, params=params)
        if token is None
        else gateway.api("GET", path, token=token, params=params)
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_usage_rows_are_newest_first_with_every_field(traffic: Gateway) -> None:
    rows = get(traffic, "/api/usage", key="u-one")["data"]
    assert [r["model"] for r in rows] == ["fake-ok", "echo-1", "fake-ok"]
    assert [r["created_at"] for r in rows] == sorted((r["created_at"] for r in rows), reverse=True)
    fake = rows[0]
    assert fake["cost_nano_usd"] == expected_cost(12, 3) and fake["channel"] == "fake" and fake["stream"] is False
    assert fake["usage_source"] == "upstream" and fake["end_reason"] == "done" and fake["status"] == 200
    assert fake["time"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(fake["created_at"]))
    assert sum(r["cost_nano_usd"] for r in rows) == 10**9 - traffic.balance("u-one")
    assert [r["request_id"] for r in rows] == [r["request_id"] for r in reversed(traffic.usage("u-one"))]
    assert len(get(traffic, "/api/usage", key="u-one", limit="2")["data"]) == 2
    assert [r["key"] for r in get(traffic, "/api/usage", channel="demo")["data"]][:2] == ["u-two", "u-one"]
    assert get(traffic, "/api/usage", key="u-one", model="echo-1")["data"] == [rows[1]]
    assert get(traffic, "/api/usage", key="u-one", since=str(int(time.time()) + 60))["data"] == []
    assert len(get(traffic, "/api/usage", key="u-one", since="1h")["data"]) == 3


def test_usage_csv_parses_and_agrees_with_the_json(traffic: Gateway) -> None:
    json_rows = get(traffic, "/api/usage", key="u-one")["data"]
    answer = traffic.api("GET", "/api/usage", params={"key": "u-one", "format": "csv"})
    assert answer.headers["content-type"].startswith("text/csv")
    csv_rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert list(csv_rows[0]) == list(json_rows[0])
    assert csv_rows == [{k: "" if v is None else str(v) for k, v in row.items()} for row in json_rows]
    summary = traffic.api("GET", "/api/usage/summary", params={"by": "key", "format": "csv"}).text
    by_key = {r["key"]: r for r in csv.DictReader(io.StringIO(summary))}
    json_by_key = {r["key"]: r for r in get(traffic, "/api/usage/summary", by="key")["data"]}
    assert by_key["u-two"] == {k: str(v) for k, v in json_by_key["u-two"].items()}


@pytest.mark.parametrize("by", ["model", "key", "channel", "day"])
def test_usage_summary_sums_agree_with_the_rows(traffic: Gateway, by: str) -> None:
    rows = get(traffic, "/api/usage", limit="1000")["data"]
    sums = get(traffic, "/api/usage/summary", by=by)["data"]
    column = "time" if by == "day" else by
    expected: Counter[Any] = Counter()
    for row in rows:
        group = row["time"][:10] if by == "day" else row[column]
        expected[(group, "requests")] += 1
        for field in ("prompt_tokens", "completion_tokens", "cached_tokens", "cost_nano_usd"):
            expected[(group, field)] += row[field]
    got = Counter({(s[by], f): s[f] for s in sums for f in ("requests", "prompt_tokens", "completion_tokens",
                                                               "cached_tokens", "cost_nano_usd")})  # fmt: skip
    assert got == expected
    assert all(s["cost_usd"] == f"{s['cost_nano_usd'] / 10**9:.9f}".rstrip("0").ljust(4, "0") for s in sums)


def test_usage_summary_of_known_requests(traffic: Gateway) -> None:
    by_model = {s["model"]: s for s in get(traffic, "/api/usage/summary", by="model", key="u-one")["data"]}
    assert by_model["fake-ok"]["requests"] == 2 and by_model["fake-ok"]["cost_nano_usd"] == 2 * expected_cost(12, 3)
    echo = by_model["echo-1"]  # echo-1 costs $1 / $2 per 1M prompt / completion tokens
    assert echo["requests"] == 1 and echo["completion_tokens"] > 0
    assert echo["cost_nano_usd"] == echo["prompt_tokens"] * 1000 + echo["completion_tokens"] * 2000


@pytest.mark.parametrize("bucket", ["hour", "day"])
def test_usage_series_buckets_sum_to_the_summary(traffic: Gateway, bucket: str) -> None:
    series = get(traffic, "/api/usage/series", bucket=bucket, by="key")
    assert series["object"] == "list" and series["bucket"] == bucket and series["by"] == "key"
    size = 3600 if bucket == "hour" else 86400
    assert all(p["t"] % size == 0 and p["t"] <= time.time() for p in series["data"])
    assert [p["t"] for p in series["data"]] == sorted(p["t"] for p in series["data"])
    totals: Counter[Any] = Counter()
    for point in series["data"]:
        totals[(point["key"], "requests")] += point["requests"]
        totals[(point["key"], "cost")] += point["cost_nano_usd"]
    for s in get(traffic, "/api/usage/summary", by="key")["data"]:
        assert (totals[(s["key"], "requests")], totals[(s["key"], "cost")]) == (s["requests"], s["cost_nano_usd"])
    by_model = get(traffic, "/api/usage/series", by="model", key="u-two")["data"]
    assert [(p["model"], p["requests"]) for p in by_model] == [("echo-1", 1)]
    assert get(traffic, "/api/usage/series", since=str(int(time.time()) + 3600))["data"] == []


def test_usage_refuses_bad_queries_naming_the_parameter(traffic: Gateway) -> None:
    for path, params, param in [
        ("/api/usage", {"limit": "0"}, "limit"),
        ("/api/usage", {"limit": "1001"}, "limit"),
        ("/api/usage", {"limit": "ten"}, "limit"),
        ("/api/usage", {"since": "yesterday"}, "since"),
        ("/api/usage", {"format": "xml"}, "format"),
        ("/api/usage/summary", {"by": "colour"}, "by"),
        ("/api/usage/series", {"bucket": "week"}, "bucket"),
        ("/api/usage/series", {"by": "channel"}, "by"),
        # 500s before: str.isdigit() takes "²" and "٥", int() refuses 5000 digits, 400 digits overflow a float.
        ("/api/usage", {"limit": "\u00b2"}, "limit"),
        ("/api/usage", {"limit": "\u0665"}, "limit"),
        ("/api/usage", {"limit": "1" * 5000}, "limit"),
        ("/api/usage", {"since": "9" * 400 + "d"}, "since"),
        ("/api/usage", {"since": "9" * 400}, "since"),
        ("/api/usage/series", {"since": "9" * 400 + "h"}, "since"),
    ]:
        answer = traffic.api("GET", path, params=params)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param, (path, params)


def test_holder_usage_is_forced_to_its_own_key(traffic: Gateway) -> None:
    secret = traffic.create_key("u-holder", credit_usd="1")
    traffic.client(secret).chat.completions.create(model="echo-1", messages=MESSAGES)
    for path in ("/api/usage", "/api/usage/summary", "/api/usage/series"):
        answer = traffic.api("GET", path, token=secret, params={"by": "key"} if "usage/" in path else {})
        data = answer.json()["data"]
        assert data and {r["key"] for r in data} == {"u-holder"}, path
        assert answer.json() == traffic.api("GET", path, token=secret, params={"key": "u-holder", **(
            {"by": "key"} if "usage/" in path else {})}).json()  # fmt: skip
        other = traffic.api("GET", path, token=secret, params={"key": "u-one"})
        assert other.status_code == 403 and other.json()["error"]["code"] == "permission_denied", path
        assert other.json()["error"]["param"] == "key"


def test_channels_show_config_and_circuit_state_without_secrets(traffic: Gateway) -> None:
    client = traffic.client(traffic.create_key("u-breaker", credit_usd="1"))
    for _ in range(3):  # breaker_failures = 3 by default
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="fake-500", messages=MESSAGES)
    answer = traffic.api("GET", "/api/channels")
    channels = {c["name"]: c for c in answer.json()["data"]}
    assert UPSTREAM_SECRET not in answer.text
    assert channels["demo"] == {
        "name": "demo",
        "kind": "echo",
        "models": ["echo-1"],
        "priority": 0,
        "weight": 1,
        "display_url": None,
        "enabled": True,
        "health": "Working normally",
        "circuits": [{"model": "echo-1", "state": "closed", "reason": "", "retry_in_s": 0.0, "health": "Working"}],
    }
    fake = channels["fake"]
    assert (
        fake["kind"] == "openai"
        and fake["display_url"].startswith("http://127.0.0.1:")
        and fake["display_url"].endswith("/v1")
    )
    circuits = {c["model"]: c for c in fake["circuits"]}
    assert circuits["fake-500"]["state"] == "open" and circuits["fake-ok"]["state"] == "closed"
    assert 0 <= circuits["fake-500"]["retry_in_s"] <= 5
    assert circuits["fake-500"]["health"].startswith("Paused after failures: requests go to other channels")
    assert fake["health"] == f"Partly down: 1 of {len(fake['models'])} models paused after failures"


def test_usage_csv_keeps_formula_like_text_as_text_in_the_api_and_the_cli(traffic: Gateway) -> None:
    # A model, channel or upstream error starting with = + - @ would run as a formula in a spreadsheet.
    async def booked(db: Database) -> None:
        key = await get_key_by_name(db, "u-one")
        assert key is not None
        row = UsageRow("req-csv-formula", time.time(), key.id, "chat", '=HYPERLINK("http://evil.example","x")',
                       "+chan", "@SUM(A1)", 502, False, 1, 1, 0, 1000, "upstream", "error", 1, 1.0, 1.0,
                       "-2+3 upstream said")  # fmt: skip
        await settle_hold(db, row)

    traffic.db_run(booked)
    api = traffic.api("GET", "/api/usage", params={"key": "u-one", "format": "csv"}).text
    cli = traffic.cli("usage", "--key", "u-one", "--csv").stdout
    for text in (api, cli):
        [row] = [r for r in csv.DictReader(io.StringIO(text)) if r["request_id"] == "req-csv-formula"]
        assert row["model"] == '\'=HYPERLINK("http://evil.example","x")' and row["channel"] == "'+chan"
        assert row["upstream_model"] == "'@SUM(A1)" and row["error"] == "'-2+3 upstream said"
        assert row["cost_usd"] == "0.000001" and row["cost_nano_usd"] == "1000" and row["status"] == "502"
    assert api.splitlines()[0] == cli.splitlines()[0] == ",".join(USAGE_FIELDS)  # one column list
    summary = traffic.api("GET", "/api/usage/summary", params={"by": "model", "format": "csv"}).text
    assert "'=HYPERLINK" in summary and "\n=HYPERLINK" not in summary and "\r\n" in summary
    assert summary.replace("\r\n", "\n") == traffic.cli("usage", "--by", "model", "--csv").stdout  # text=True


def test_member_usage_is_its_accounts_rows_and_the_admin_filters_by_account(traffic: Gateway) -> None:
    with member(traffic, "u-member", credit_usd="1") as browser:
        laptop, phone = browser.create_key("laptop")["key"], browser.create_key("phone")["key"]
        traffic.client(laptop).chat.completions.create(model="echo-1", messages=MESSAGES)
        traffic.client(phone).chat.completions.create(model="fake-ok", messages=MESSAGES)
        rows = browser.call("GET", "/api/usage").json()["data"]
        assert sorted(r["key"] for r in rows) == ["laptop", "phone"]  # its account's keys, no other's
        sums = browser.call("GET", "/api/usage/summary", params={"by": "key"}).json()["data"]
        assert {s["key"]: s["requests"] for s in sums} == {"laptop": 1, "phone": 1}
        refused = browser.call("GET", "/api/usage", params={"account": "u-one"})
        assert refused.status_code == 403 and refused.json()["error"]["param"] == "account"
    by_admin = get(traffic, "/api/usage", account="u-member")["data"]
    assert sorted(r["request_id"] for r in by_admin) == sorted(r["request_id"] for r in rows)
    assert traffic.api("GET", "/api/usage", params={"account": "nobody-here"}).status_code == 404
