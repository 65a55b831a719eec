"""OpenAI clients on Claude models: the official openai SDK -> /v1/chat/completions -> an `anthropic`
channel of the fake Anthropic upstream (tests/fakes/anthropic.py), over real sockets.

The gateway translates chat to Anthropic's Messages API and back (tokenbridge/chat_messages.py);
what the caller gets validates against OpenAI's own schemas, and what it is charged comes from the
upstream's Messages usage, cache reads and writes priced as configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.conftest import UPSTREAM_SECRET, Gateway, serve_config
from tests.e2e.test_streams import settled_row
from tests.fakes import anthropic as fake
from tests.fakes.upstream import FakeUpstream
from tests.schemas import validate
from tokenbridge.tokens import count
from tokenbridge.upstream.sse import EventSplitter, event_data

MODELS = ["claude-ok", "claude-cached", "claude-nousage", "claude-tool", "claude-break", "claude-error-event"]
MODELS += ["claude-hold", "claude-529", "claude-400"]
FAILOVER = "claude-failover"  # on the anthropic channel as claude-529 (overloaded), and on an OpenAI one below it
# USD per 1M tokens, distinct so each term shows in a cost (Anthropic's own ratios: a cache read is
# a tenth of input, a cache write a quarter more).
PRICE = {"input": "3.0", "output": "15.0", "cached_input": "0.3", "cache_write": "3.75"}
CONFIG = """
[server]
database = "gateway.db"
default_max_tokens = 1000

[[channels]]
name = "claude"
kind = "anthropic"
base_url = "{upstream}/v1"
api_key = "{secret}"
models = {models}
priority = 10
model_map = {{ "{failover}" = "claude-529" }}

[[channels]]
name = "backup"
base_url = "{upstream}/v1"
api_key = "{secret}"
models = ["{failover}"]

[groups.default]
multiplier = 1.0
"""
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": fake.TOOL_NAME,
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def expected_cost(prompt: int, completion: int, cached: int = 0, cache_write: int = 0) -> int:
    """SPEC §6 and §12 written out independently of tokenbridge.money, in nano-USD, rounded up."""
    usd_per_million = (
        Fraction(prompt - cached - cache_write) * Fraction(PRICE["input"])
        + Fraction(cached) * Fraction(PRICE["cached_input"])
        + Fraction(cache_write) * Fraction(PRICE["cache_write"])
        + Fraction(completion) * Fraction(PRICE["output"])
    )
    nano = usd_per_million / 10**6 * 10**9
    return -((-nano.numerator) // nano.denominator)


@pytest.fixture(scope="module")
def claude(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    fake_upstream, url = upstream
    prices = "".join(
        f'[models."{m}"]\n' + "".join(f"{term} = {value}\n" for term, value in PRICE.items())
        for m in [*MODELS, FAILOVER]
    )
    models = orjson.dumps([*MODELS, FAILOVER]).decode()
    text = CONFIG.format(upstream=url, secret=UPSTREAM_SECRET, models=models, failover=FAILOVER) + prices
    yield from serve_config(text, tmp_path_factory, fake_upstream)


def last_seen(gateway: Gateway, model: str) -> Any:
    return gateway.fake.requests_for(model)[-1]


def billed(gateway: Gateway, name: str) -> dict[str, Any]:
    """The key's one usage row, checked against its charge: balance == Σ ledger, charge == the row's cost."""
    [row] = gateway.usage(name)
    assert gateway.balance(name) == gateway.ledger_sum(name) == 10**9 - row["cost"]
    return row


def test_chat_json_on_an_anthropic_channel_is_a_valid_chat_completion_billed_exactly(claude: Gateway) -> None:
    key = claude.create_key("om-json")
    raw = claude.client(key).chat.completions.with_raw_response.create(model="claude-ok", messages=MESSAGES)
    body = validate("CreateChatCompletionResponse", raw.http_response.json())
    completion = raw.parse()
    assert completion.choices[0].message.content == fake.TEXT and completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 3)
    assert body["object"] == "chat.completion"
    seen = last_seen(claude, "claude-ok")
    assert seen.path == "/v1/messages" and seen.headers["x-api-key"] == UPSTREAM_SECRET
    assert seen.headers["anthropic-version"] and "authorization" not in seen.headers  # caller's key stays home
    assert seen.body == {
        "model": "claude-ok",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}],
        "system": [{"type": "text", "text": "Be brief."}],
        "max_tokens": 1000,  # the server's default_max_tokens: Anthropic requires one
    }
    row = billed(claude, "om-json")
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (12, 3, "upstream")
    assert row["cost"] == expected_cost(12, 3) and row["end_reason"] == "done"


@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_stream_on_an_anthropic_channel_is_valid_chunks_billed_exactly(
    claude: Gateway, include_usage: bool
) -> None:
    name = f"om-stream-{include_usage}"
    key = claude.create_key(name)
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = claude.client(key).chat.completions.create(
        model="claude-cached", messages=MESSAGES, stream=True, **options
    )
    chunks = list(stream)
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == fake.TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    if include_usage:
        usage = chunks[-1].usage
        assert chunks[-1].choices == [] and usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (14, 3, 17)
        assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 6
    else:
        assert all(c.choices and c.usage is None for c in chunks)
    assert "stream_options" not in last_seen(claude, "claude-cached").body  # Anthropic would refuse it
    row = billed(claude, name)
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (14, 6, 3)
    assert row["completion_tokens"] == 3 and row["usage_source"] == "upstream"
    assert row["cost"] == expected_cost(14, 3, cached=6, cache_write=3)


def test_chat_json_cache_reads_and_writes_are_billed_at_their_prices(claude: Gateway) -> None:
    key = claude.create_key("om-cached-json")
    completion = claude.client(key).chat.completions.create(model="claude-cached", messages=MESSAGES)
    assert completion.usage is not None and completion.usage.prompt_tokens == 14
    row = billed(claude, "om-cached-json")
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (14, 6, 3)
    assert row["cost"] == expected_cost(14, 3, cached=6, cache_write=3) > 0


@pytest.mark.parametrize("stream", [False, True])
def test_chat_tool_round_trip_on_an_anthropic_channel(claude: Gateway, stream: bool) -> None:
    client = claude.client(claude.create_key(f"om-tools-{stream}"))
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        chunks = list(
            client.chat.completions.create(model="claude-tool", messages=ask, tools=[WEATHER_TOOL], stream=True)
        )
        for chunk in chunks:
            validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        pieces = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
        call_id, name = pieces[0].id, pieces[0].function.name  # type: ignore[union-attr]
        arguments = "".join(p.function.arguments or "" for p in pieces if p.function)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        raw = client.chat.completions.with_raw_response.create(model="claude-tool", messages=ask, tools=[WEATHER_TOOL])
        message = validate("CreateChatCompletionResponse", raw.http_response.json())["choices"][0]["message"]
        [call] = message["tool_calls"]
        call_id, name, arguments = call["id"], call["function"]["name"], call["function"]["arguments"]
        text, finish = message["content"], raw.parse().choices[0].finish_reason
    assert (call_id, name, orjson.loads(arguments)) == (fake.TOOL_ID, fake.TOOL_NAME, fake.TOOL_INPUT)
    assert text == fake.TOOL_PREAMBLE and finish == "tool_calls"
    sent = last_seen(claude, "claude-tool").body
    assert sent["tools"] == [
        {
            "name": fake.TOOL_NAME,
            "input_schema": WEATHER_TOOL["function"]["parameters"],
            "description": "The weather in a city.",
        }  # type: ignore[index]
    ]
    reply = {"role": "assistant", "content": text, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    ]}  # fmt: skip
    answer = client.chat.completions.create(
        model="claude-tool",
        messages=[*ask, reply, {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 C"}],
        tools=[WEATHER_TOOL],
    )
    assert answer.choices[0].message.content == "The tool said: sunny, 21 C"
    assert last_seen(claude, "claude-tool").body["messages"][-1] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": fake.TOOL_ID, "content": "sunny, 21 C"}],
    }
    rows = claude.usage(f"om-tools-{stream}")
    assert [r["completion_tokens"] for r in rows] == [fake.TOOL_OUTPUT_TOKENS, 2]
    assert [r["cost"] for r in rows] == [expected_cost(12, fake.TOOL_OUTPUT_TOKENS), expected_cost(12, 2)]


def _stream_events(gateway: Gateway, key: str, model: str) -> tuple[list[Any], bytes]:
    body = {"model": model, "messages": MESSAGES, "stream": True}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    splitter = EventSplitter()
    events = [orjson.loads(event_data(e)) for e in splitter.feed(response.content)]
    assert response.status_code == 200 and splitter.tail == b""
    return events, response.content


@pytest.mark.parametrize("model", ["claude-break", "claude-error-event"])
def test_a_broken_anthropic_stream_ends_the_chat_stream_with_an_error_and_no_done(claude: Gateway, model: str) -> None:
    key = claude.create_key(f"om-{model}")
    events, content = _stream_events(claude, key, model)
    assert b"[DONE]" not in content
    assert events[1]["choices"][0]["delta"]["content"] == fake.PIECES[0]
    assert [e for e in events if "error" in e] == events[-1:]  # one error event, the last
    error = validate("ErrorResponse", events[-1])["error"]
    assert error["code"] == "upstream_error"
    if model == "claude-error-event":
        assert error["message"] == "The upstream failed mid-stream: Overloaded"  # what Anthropic said
    with pytest.raises(openai.APIError):
        for _ in claude.client(key).chat.completions.create(model=model, messages=MESSAGES, stream=True):
            pass
    rows = claude.usage(f"om-{model}")
    assert {r["end_reason"] for r in rows} == {"upstream_error"}
    for row in rows:  # what was delivered is billed: the prompt, and the one piece that went out, counted offline
        assert (row["usage_source"], row["completion_tokens"]) == ("estimated", count(fake.PIECES[0], model))
        assert row["prompt_tokens"] > 0 and row["cost"] == expected_cost(row["prompt_tokens"], row["completion_tokens"])
    assert claude.balance(f"om-{model}") == claude.ledger_sum(f"om-{model}") == 10**9 - sum(r["cost"] for r in rows)


def test_a_caller_leaving_a_chat_stream_on_an_anthropic_channel_pays_for_what_was_delivered(claude: Gateway) -> None:
    key = claude.create_key("om-gone")
    claude.fake.arm()
    stream = claude.client(key).chat.completions.create(model="claude-hold", messages=MESSAGES, stream=True)
    assert next(stream).choices[0].delta.role == "assistant"
    delivered = [next(stream).choices[0].delta.content for _ in fake.PIECES]
    assert "".join(d or "" for d in delivered) == fake.TEXT
    stream.close()
    assert claude.fake.hung_up.acquire(timeout=10), "the upstream never saw the gateway hang up"
    row = settled_row(claude, "om-gone", lambda r: r["end_reason"] == "client_gone")
    # It left before the message_delta that says the output count: counted offline, what was delivered.
    assert (row["status"], row["usage_source"]) == (200, "estimated")
    assert row["completion_tokens"] == count(fake.TEXT, "claude-hold") and row["prompt_tokens"] > 0
    assert row["cost"] == expected_cost(row["prompt_tokens"], row["completion_tokens"])
    assert claude.balance("om-gone") == claude.ledger_sum("om-gone") == 10**9 - row["cost"]


def test_a_chat_field_messages_cannot_honour_is_refused_by_name_and_costs_nothing(claude: Gateway) -> None:
    key = claude.create_key("om-refused")
    sent = len(claude.fake.requests_for("claude-ok"))
    with pytest.raises(openai.BadRequestError) as caught:
        claude.client(key).chat.completions.create(model="claude-ok", messages=MESSAGES, n=2)
    error = validate("ErrorResponse", caught.value.response.json())["error"]
    assert error["param"] == "n" and "'n'" in error["message"]
    assert claude.balance("om-refused") == claude.ledger_sum("om-refused") == 10**9
    assert [(r["status"], r["cost"]) for r in claude.usage("om-refused")] == [(400, 0)]
    assert len(claude.fake.requests_for("claude-ok")) == sent  # refused before any channel was asked


def test_anthropic_errors_reach_an_openai_caller_in_openais_shape(claude: Gateway) -> None:
    key = claude.create_key("om-errors")
    client = claude.client(key)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="claude-400", messages=MESSAGES)
    error = validate("ErrorResponse", refused.value.response.json())["error"]
    assert error["message"] == "fake claude says no" and error["type"] == "invalid_request_error"
    with pytest.raises(openai.APIStatusError) as overloaded:
        client.chat.completions.create(model="claude-529", messages=MESSAGES)
    assert overloaded.value.status_code == 502
    assert validate("ErrorResponse", overloaded.value.response.json())["error"]["code"] == "upstream_error"
    assert claude.balance("om-errors") == claude.ledger_sum("om-errors") == 10**9  # no answer, no charge


def test_a_chat_call_fails_over_from_an_anthropic_channel_to_an_openai_one_each_spoken_its_own_wire(
    claude: Gateway,
) -> None:
    key = claude.create_key("om-failover")
    completion = claude.client(key).chat.completions.create(model=FAILOVER, messages=MESSAGES)
    assert completion.choices[0].message.content == "Hello from fake"  # the OpenAI fake's answer
    overloaded, answered = claude.fake.requests_for("claude-529")[-1], claude.fake.requests_for(FAILOVER)[-1]
    assert (overloaded.path, answered.path) == ("/v1/messages", "/v1/chat/completions")
    assert "system" in overloaded.body and answered.body["messages"] == MESSAGES  # each its own shape
    row = billed(claude, "om-failover")
    assert (row["channel"], row["prompt_tokens"], row["completion_tokens"]) == ("backup", 12, 3)
    assert row["cost"] == expected_cost(12, 3)
