"""A caller's X-Request-ID is for tracing: echoed, logged and kept on the usage row, but the row is keyed
by the gateway's own id, so an id sent twice (an SDK retry resends it) is served each time (issue 11, item 8)."""

from __future__ import annotations

import logging

import httpx
import openai
import pytest

from tests.conftest import Gateway

MESSAGES = [{"role": "user", "content": "hi"}]


def test_a_callers_request_id_sent_twice_is_served_twice_echoed_and_kept_on_both_rows(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    secret = gateway.create_key("ids-twice")
    headers = {"Authorization": f"Bearer {secret}", "X-Request-ID": "trace-twice-1"}
    body = {"model": "fake-ok", "messages": MESSAGES}
    with caplog.at_level(logging.INFO, logger="tokenbridge.access"):
        answers = [httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert [a.headers["x-request-id"] for a in answers] == ["trace-twice-1"] * 2
    rows = gateway.usage("ids-twice")
    assert [r["caller_request_id"] for r in rows] == ["trace-twice-1"] * 2
    ours = [r["request_id"] for r in rows]
    assert len(set(ours)) == 2 and all(i.startswith("req_") for i in ours)
    lines = [r.msg.fields for r in caplog.records if r.name == "tokenbridge.access"]  # type: ignore[attr-defined]
    assert sorted((line["request_id"], line["caller_request_id"]) for line in lines) == sorted(
        (i, "trace-twice-1") for i in ours
    )
    assert gateway.balance("ids-twice") == gateway.ledger_sum("ids-twice") == 10**9 - sum(r["cost"] for r in rows)


def test_an_sdk_retry_after_a_502_with_the_same_request_id_reaches_the_upstream_again(gateway: Gateway) -> None:
    secret = gateway.create_key("ids-retry")
    client = gateway.client(secret, default_headers={"X-Request-ID": "trace-retry-1"}).with_options(max_retries=1)
    before = len(gateway.fake.requests_for("fake-500"))
    with pytest.raises(openai.InternalServerError) as caught:  # the retry is served (502 again), not refused (400)
        client.chat.completions.create(model="fake-500", messages=MESSAGES)
    assert caught.value.status_code == 502 and caught.value.response.headers["x-request-id"] == "trace-retry-1"
    assert len(gateway.fake.requests_for("fake-500")) == before + 2
    rows = gateway.usage("ids-retry")
    assert [(r["caller_request_id"], r["status"], r["cost"]) for r in rows] == [("trace-retry-1", 502, 0)] * 2


def test_without_a_callers_id_the_header_is_the_usage_rows_id(gateway: Gateway) -> None:
    secret = gateway.create_key("ids-ours")
    raw = gateway.client(secret).chat.completions.with_raw_response.create(model="fake-ok", messages=MESSAGES)
    (row,) = gateway.usage("ids-ours")
    assert raw.headers["x-request-id"] == row["request_id"] and row["caller_request_id"] is None
