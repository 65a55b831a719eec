"""Streams that end badly, callers that leave, and answers that cost more than their hold."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.conftest import Gateway
from tests.e2e.test_chat import MESSAGES, expected_cost
from tests.fakes.upstream import PIECES
from tests.schemas import validate
from tokenbridge.upstream.sse import EventSplitter, event_data


def settled_row(gateway: Gateway, key: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The key's last usage row once it is written. A caller that hung up gets no answer to wait on,
    so this polls the store (bounded), the one place where the outcome shows."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = gateway.usage(key)
        if rows and ready(rows[-1]):
            return rows[-1]
        time.sleep(0.02)
    raise AssertionError(f"no settled row for {key}: {gateway.usage(key)}")


def settled_rows(gateway: Gateway, key: str, count: int) -> list[dict[str, Any]]:
    """The key's usage rows once there are `count`: a broken stream's caller may read its end before the
    row is written (see settled_row)."""
    settled_row(gateway, key, lambda last: len(gateway.usage(key)) >= count)
    return gateway.usage(key)


def hang_up_while_held(gateway: Gateway, path: str, key: str, body: dict[str, Any]) -> None:
    """POST `body` (for a `fake-hold` model) and hang up once the upstream holds it: the gateway must close it."""
    gateway.fake.arm()
    data = orjson.dumps(body)
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
            + f"Authorization: Bearer {key}\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        assert gateway.fake.holding.acquire(timeout=10)
    assert gateway.fake.hung_up.acquire(timeout=10), "the upstream never saw the gateway hang up"


def test_stream_without_done_raises_in_the_sdk(gateway: Gateway) -> None:
    key = gateway.create_key("streams-nodone")
    stream = gateway.client(key).chat.completions.create(model="fake-nodone", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="without \\[DONE\\]"):
        for _ in stream:
            pass
    [row] = gateway.usage("streams-nodone")
    assert row["end_reason"] == "upstream_error" and "[DONE]" in row["error"]


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_broken_mid_response_ends_with_a_whole_error_event(gateway: Gateway, include_usage: bool) -> None:
    key = gateway.create_key(f"streams-break-{include_usage}")
    body = {"model": "fake-break", "messages": MESSAGES, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    splitter = EventSplitter()
    events = [orjson.loads(event_data(e)) for e in splitter.feed(response.content)]
    assert splitter.tail == b"" and b"[DONE]" not in response.content
    assert events[1]["choices"][0]["delta"]["content"] == PIECES[0]
    error = validate("ErrorResponse", events[-1])["error"]
    assert error["code"] == "upstream_error"
    with pytest.raises(openai.APIError):
        for _ in gateway.client(key).chat.completions.create(model="fake-break", messages=MESSAGES, stream=True):
            pass
    assert {r["end_reason"] for r in gateway.usage(f"streams-break-{include_usage}")} == {"upstream_error"}


def test_caller_closing_a_stream_closes_the_upstream(gateway: Gateway) -> None:
    key = gateway.create_key("streams-gone")
    gateway.fake.arm()
    stream = gateway.client(key).chat.completions.create(model="fake-hold", messages=MESSAGES, stream=True)
    next(stream)
    assert next(stream).choices[0].delta.content == PIECES[0]
    stream.close()
    assert gateway.fake.hung_up.acquire(timeout=10), "the upstream never saw the gateway hang up"
    row = settled_row(gateway, "streams-gone", lambda r: r["end_reason"] == "client_gone")
    assert row["status"] == 200


def test_caller_leaving_a_json_request_closes_the_upstream(gateway: Gateway) -> None:
    key = gateway.create_key("streams-gone-json")
    hang_up_while_held(gateway, "/v1/chat/completions", key, {"model": "fake-hold", "messages": MESSAGES})
    row = settled_row(gateway, "streams-gone-json", lambda r: r["end_reason"] == "client_gone")
    # The upstream had the prompt: it is billed, counted offline; nothing of the answer was delivered.
    assert (row["usage_source"], row["prompt_tokens"], row["completion_tokens"]) == ("estimated", 9, 0)
    assert row["status"] == 499  # nginx's "client closed request": no answer ever went out
    assert row["cost"] == expected_cost(9, 0)


def test_charge_never_exceeds_the_hold(gateway: Gateway) -> None:
    key = gateway.create_key("streams-huge", credit_usd="1")
    body = orjson.dumps({"model": "fake-huge", "messages": MESSAGES})
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.json()["usage"]["completion_tokens"] == 10_000_000
    hold = len(body) * 1500 + 4096 * 4000  # bytes at $1.5/1M + default_max_tokens at $4/1M, in nano-USD
    [row] = gateway.usage("streams-huge")
    assert row["completion_tokens"] == 10_000_000 and row["cost"] == hold
    assert gateway.balance("streams-huge") == gateway.ledger_sum("streams-huge") == 1_000_000_000 - hold
