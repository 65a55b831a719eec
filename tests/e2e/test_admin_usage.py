"""The admin API's usage rows, sums and series (/admin/usage*), checked against known requests."""

from __future__ import annotations

from tests.conftest import Gateway

MESSAGES = [{"role": "user", "content": "count these words please"}]


def test_usage_rows_summary_and_series_agree(admin_gateway: Gateway) -> None:
    client = admin_gateway.client(admin_gateway.create_key("use-a"))
    for _ in range(3):
        client.chat.completions.create(model="echo-1", messages=MESSAGES)
    rows = admin_gateway.api("GET", "/admin/usage", params={"key": "use-a"}).json()["data"]
    assert len(rows) == 3 and {r["model"] for r in rows} == {"echo-1"}
    [summary] = admin_gateway.api("GET", "/admin/usage/summary", params={"key": "use-a", "by": "model"}).json()["data"]
    assert summary["requests"] == 3
    assert summary["cost_nano_usd"] == sum(r["cost_nano_usd"] for r in rows)
    series = admin_gateway.api("GET", "/admin/usage/series", params={"key": "use-a", "bucket": "day"}).json()
    assert sum(p["requests"] for p in series["data"]) == 3
