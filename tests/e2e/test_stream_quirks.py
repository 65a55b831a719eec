"""Upstream streams that are valid but unusual, or carry chunks the gateway must not trip over.

Bare-CR line ends (valid SSE), two usage reports in one stream, choices and deltas that are not
objects, and (the in-process upstream) echo's content parts whose text is not a string.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Gateway
from tests.e2e.test_chat import MESSAGES, expected_cost
from tests.fakes.upstream import TEXT
from tokenbridge.upstream.sse import EventSplitter, event_data

PROMPT = "the quick brown fox jumps"


def stream_text(gateway: Gateway, key: str, route: str, model: str, **extra: Any) -> str:
    """What the caller reads through the openai SDK from a stream on `route`."""
    client = gateway.client(key)
    if route == "chat":
        chunks = client.chat.completions.create(model=model, messages=MESSAGES, stream=True, **extra)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    pieces = client.completions.create(model=model, prompt=PROMPT, stream=True, **extra)
    return "".join(c.choices[0].text for c in pieces if c.choices)


def raw_stream(gateway: Gateway, key: str, route: str, model: str) -> bytes:
    if route == "chat":
        path, body = "chat/completions", {"messages": MESSAGES}
    else:
        path, body = "completions", {"prompt": PROMPT}
    response = httpx.post(
        f"{gateway.url}/v1/{path}",
        json={"model": model, "stream": True, **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=20,
    )
    assert response.status_code == 200
    return response.content


def billed_as_upstream_said(row: dict[str, Any]) -> None:
    assert (row["status"], row["end_reason"], row["error"]) == (200, "done", None)
    assert (row["usage_source"], row["prompt_tokens"], row["completion_tokens"]) == ("upstream", 12, 3)
    assert row["cost"] == expected_cost(12, 3)


@pytest.mark.parametrize("route", ["chat", "completions"])
def test_bare_cr_stream_reaches_the_caller_whole_and_is_billed_from_its_usage(gateway: Gateway, route: str) -> None:
    # It was taken for a stream without [DONE]: an error event after [DONE], an estimated bill, and on
    # /v1/completions the text never reached the caller.
    name = f"quirk-cr-{route}"
    key = gateway.create_key(name)
    assert stream_text(gateway, key, route, "fake-cr") == TEXT
    raw = raw_stream(gateway, key, route, "fake-cr")
    assert raw.endswith(b"data: [DONE]\r\r")
    splitter = EventSplitter()
    data = [event_data(e) for e in splitter.feed(raw)]
    assert splitter.tail == b"" and data[-1] == b"[DONE]" and not any(b'"error"' in d for d in data)
    for row in gateway.usage(name):
        billed_as_upstream_said(row)
    assert gateway.balance(name) == gateway.ledger_sum(name) == 10**9 - 2 * expected_cost(12, 3)


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_with_two_usage_reports_bills_the_larger(gateway: Gateway, include_usage: bool) -> None:
    # The second report says 1/1: taking the last unchecked billed almost nothing.
    name = f"quirk-twousage-{include_usage}"
    key = gateway.create_key(name)
    options: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        gateway.client(key).chat.completions.create(model="fake-twousage", messages=MESSAGES, stream=True, **options)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    reports = [(c.usage.prompt_tokens, c.usage.completion_tokens) for c in chunks if c.usage is not None]
    assert reports == ([(12, 3), (1, 1)] if include_usage else [])  # what the upstream said, passed on as it said it
    [row] = gateway.usage(name)
    billed_as_upstream_said(row)


def test_completions_stream_with_malformed_choices_and_deltas_is_translated(gateway: Gateway) -> None:
    # A choice that is not an object and a delta that is not one broke the translation: a 500 row.
    name = "quirk-baddelta"
    key = gateway.create_key(name)
    assert stream_text(gateway, key, "completions", "fake-baddelta") == TEXT
    raw = raw_stream(gateway, key, "completions", "fake-baddelta")
    assert raw.endswith(b"data: [DONE]\n\n") and b'"error"' not in raw
    for row in gateway.usage(name):
        billed_as_upstream_said(row)


@pytest.mark.parametrize("stream", [False, True])
def test_echo_answers_around_a_text_part_whose_text_is_not_a_string(gateway: Gateway, stream: bool) -> None:
    # The echo channel raised TypeError on such a part: a 500 for every one of them.
    name = f"quirk-echo-{stream}"
    key = gateway.create_key(name)
    content = [{"type": "text", "text": "Hello "}, {"type": "text", "text": 5}, {"type": "text", "text": "there"}]
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "echo-1", "messages": [{"role": "user", "content": content}], "stream": stream},
        headers={"Authorization": f"Bearer {key}"},
        timeout=20,
    )
    assert response.status_code == 200
    if stream:
        events = [event_data(e) for e in EventSplitter().feed(response.content)]
        assert events[-1] == b"[DONE]" and not any(b'"error"' in e for e in events)
        assert b"Hello " in response.content and b"there" in response.content
    else:
        assert response.json()["choices"][0]["message"]["content"] == "Hello there"
    [row] = gateway.usage(name)
    assert (row["status"], row["end_reason"], row["completion_tokens"]) == (200, "done", 2)
