"""/v1/messages through the official `anthropic` SDK (the latest: it is a test dependency), on an
anthropic channel (bytes passed through) and on an openai channel and the echo (through chat)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.conftest import UPSTREAM_SECRET, Gateway
from tests.e2e.messages_config import CHAT_PRICE, CLAUDE_PRICE, cost_of, serve_messages_gateway
from tests.e2e.test_streams import settled_row, settled_rows
from tests.fakes import anthropic as fake_claude
from tests.fakes.upstream import FakeUpstream
from tokenbridge.messages import chat_request
from tokenbridge.tokens import count, prompt_tokens
from tokenbridge.upstream.sse import EventSplitter, event_data

HELLO = [{"role": "user", "content": "Say hello"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def site(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_messages_gateway(upstream, tmp_path_factory)


def client(site: Gateway, key: str, **kwargs: Any) -> anthropic.Anthropic:
    made = anthropic.Anthropic(api_key=key, base_url=site.url, max_retries=0, timeout=20, **kwargs)
    site.clients.append(made)  # type: ignore[arg-type]  # closed at teardown, as the openai ones are
    return made


def billed(site: Gateway, name: str, credit_nano: int = 10**9) -> list[dict[str, Any]]:
    """The key's rows, after checking that its balance moved by exactly their costs and equals its ledger."""
    rows = site.usage(name)
    assert site.balance(name) == credit_nano - sum(r["cost"] for r in rows) == site.ledger_sum(name)
    return rows


# --- an anthropic channel: passed through --------------------------------------------------------------------------


def test_create_on_an_anthropic_channel_is_passed_through_with_the_channel_s_key(site: Gateway) -> None:
    key = site.create_key("m-create")
    message = client(site, key).messages.create(model="claude-ok", max_tokens=50, messages=HELLO)
    assert message.content[0].text == fake_claude.TEXT  # type: ignore[union-attr]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 3)
    seen = site.fake.requests_for("claude-ok")[-1]
    assert seen.path == "/v1/messages" and seen.headers["x-api-key"] == UPSTREAM_SECRET
    assert key not in str(seen.headers) and "authorization" not in seen.headers
    assert seen.headers["anthropic-version"] == client(site, key).default_headers["anthropic-version"]
    [row] = billed(site, "m-create")
    assert (row["route"], row["channel"], row["usage_source"]) == ("messages", "claude", "upstream")
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (
        12,
        3,
        0,
        0,
    )
    assert row["cost"] == cost_of(CLAUDE_PRICE, prompt=12, completion=3)


def test_a_bearer_token_is_a_key_too(site: Gateway) -> None:
    key = site.create_key("m-bearer")
    bearer = anthropic.Anthropic(auth_token=key, base_url=site.url, max_retries=0, timeout=20)
    site.clients.append(bearer)  # type: ignore[arg-type]
    assert bearer.messages.create(model="fake-ok", max_tokens=5, messages=HELLO).content[0].text == "Hello from fake"  # type: ignore[union-attr]
    assert len(billed(site, "m-bearer")) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_cache_reads_and_writes_are_priced_each_at_its_own_rate(site: Gateway, stream: bool) -> None:
    name = f"m-cache-{stream}"
    key = site.create_key(name)
    messages = client(site, key).messages
    if stream:
        with messages.stream(model="claude-cached", max_tokens=50, messages=HELLO) as events:
            message = events.get_final_message()
    else:
        message = messages.create(model="claude-cached", max_tokens=50, messages=HELLO)
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (5, 6, 3)
    [row] = billed(site, name)
    # Anthropic's input_tokens leave the cache out: the row's prompt is all of it, the cache parts within it.
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"], row["completion_tokens"]) == (
        14,
        6,
        3,
        3,
    )
    assert row["cost"] == cost_of(CLAUDE_PRICE, prompt=14, completion=3, cached=6, written=3) > 0


def test_a_stream_is_passed_on_byte_for_byte(site: Gateway) -> None:
    key = site.create_key("m-bytes")
    body = {"model": "claude-ok", "max_tokens": 50, "messages": HELLO, "stream": True}
    answer = httpx.post(
        site.url + "/v1/messages", json=body, headers={"x-api-key": key, "anthropic-version": "2023-06-01"}
    )
    blocks = [{"type": "text", "pieces": fake_claude.PIECES}]
    assert answer.content == b"".join(fake_claude.stream_events("claude-ok", blocks, "end_turn", None))
    [row] = billed(site, "m-bytes")
    assert (row["prompt_tokens"], row["completion_tokens"], row["end_reason"]) == (12, 3, "done")


def test_a_tool_round_trip_on_an_anthropic_channel(site: Gateway) -> None:
    key = site.create_key("m-tool")
    messages = client(site, key).messages
    with messages.stream(model="claude-tool", max_tokens=200, messages=HELLO, tools=[WEATHER]) as events:
        first = events.get_final_message()
    [call] = [b for b in first.content if b.type == "tool_use"]
    assert (first.stop_reason, call.name, call.input) == ("tool_use", "get_weather", {"city": "Paris"})
    turns: list[Any] = [
        *HELLO,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
    ]
    second = messages.create(model="claude-tool", max_tokens=200, messages=turns, tools=[WEATHER])
    assert second.content[0].text == "The tool said: sunny"  # type: ignore[union-attr]
    rows = billed(site, "m-tool")
    assert [r["completion_tokens"] for r in rows] == [fake_claude.TOOL_OUTPUT_TOKENS, 2]


def test_count_tokens_is_passed_to_an_anthropic_channel_and_counted_here_for_others(site: Gateway) -> None:
    key = site.create_key("m-count")
    messages = client(site, key).messages
    assert messages.count_tokens(model="claude-ok", messages=HELLO).input_tokens == fake_claude.COUNT_TOKENS
    raw = messages.with_raw_response.count_tokens(model="fake-ok", messages=HELLO, system="Be brief.")
    assert raw.headers["x-tokenbridge-token-count"] == "estimated"
    assert 0 < raw.parse().input_tokens < 40 and orjson.loads(raw.http_response.content)["estimated"] is True
    assert not any(s.path.endswith("count_tokens") for s in site.fake.requests_for("fake-ok"))
    assert site.usage("m-count") == [] and site.balance("m-count") == 10**9  # free, as at Anthropic


# --- an openai channel and the echo: through chat ----------------------------------------------------------------


def test_create_on_an_openai_channel_goes_through_chat_and_back(site: Gateway) -> None:
    key = site.create_key("m-chat")
    message = client(site, key).messages.create(
        model="fake-cached",
        max_tokens=50,
        system="Be brief.",
        messages=HELLO,
        stop_sequences=["END"],
        extra_body={"temperature": 0.5},  # the latest SDK has no such argument any more; the API still takes it
    )
    assert message.content[0].text == "Hello from fake"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.id.startswith("msg_")
    # OpenAI's 12 prompt tokens include the 8 cached ones; Anthropic's input_tokens do not.
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (4, 8, 3)
    sent = site.fake.requests_for("fake-cached")[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"] == [{"role": "system", "content": "Be brief."}, *HELLO]
    assert (sent.body["max_tokens"], sent.body["stop"], sent.body["temperature"]) == (50, ["END"], 0.5)
    [row] = billed(site, "m-chat")
    assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == (12, 8, 3)
    assert row["cost"] == cost_of(CHAT_PRICE, prompt=12, completion=3, cached=8)


def test_a_stream_from_an_openai_channel_is_anthropic_s_event_sequence(site: Gateway) -> None:
    key = site.create_key("m-chat-stream")
    with client(site, key).messages.stream(model="fake-ok", max_tokens=50, messages=HELLO) as events:
        names = [event.type for event in events]
        message = events.get_final_message()
    assert message.content[0].text == "Hello from fake" and message.usage.output_tokens == 3  # type: ignore[union-attr]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(names)
    assert site.fake.requests_for("fake-ok")[-1].body["stream_options"] == {"include_usage": True}
    [row] = billed(site, "m-chat-stream")
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (12, 3, "upstream")


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_round_trip_on_an_openai_channel(site: Gateway, stream: bool) -> None:
    name = f"m-chat-tool-{stream}"
    key = site.create_key(name)
    messages = client(site, key).messages

    def ask(turns: list[Any]) -> anthropic.types.Message:
        if not stream:
            return messages.create(model="fake-roundtrip", max_tokens=200, messages=turns, tools=[WEATHER])
        with messages.stream(model="fake-roundtrip", max_tokens=200, messages=turns, tools=[WEATHER]) as events:
            return events.get_final_message()

    first = ask(HELLO)
    [call] = [b for b in first.content if b.type == "tool_use"]
    assert (first.stop_reason, call.name, call.input) == ("tool_use", "get_weather", {"city": "Paris"})
    result = {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "sunny"}]}
    second = ask([*HELLO, {"role": "assistant", "content": first.content}, {"role": "user", "content": [result]}])
    assert second.content[0].text == "The tool said: sunny"  # type: ignore[union-attr]
    sent = site.fake.requests_for("fake-roundtrip")[-1].body
    assert sent["messages"][-2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    rows = billed(site, name)
    assert [(r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [(20, 7), (20, 7)]
    assert {r["cost"] for r in rows} == {cost_of(CHAT_PRICE, prompt=20, completion=7)}


def test_what_claude_code_sends_is_dropped_or_mapped_never_refused(site: Gateway) -> None:
    key = site.create_key("m-claude-code")
    body = {
        "model": "fake-ok",
        "max_tokens": 32000,
        "stream": True,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "c2ln"},
                    {"type": "text", "text": "Hello."},
                ],
            },  # fmt: skip
            {"role": "system", "content": "Stay terse."},
            {"role": "user", "content": "and now?"},
        ],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "user_abc_account__session_1"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "tools": [
            {**WEATHER, "cache_control": {"type": "ephemeral"}},
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        "tool_choice": {"type": "auto"},
    }
    headers = {"x-api-key": key, "anthropic-beta": "interleaved-thinking-2025-05-14", "anthropic-version": "2023-06-01"}
    answer = httpx.post(site.url + "/v1/messages?beta=true", json=body, headers=headers, timeout=20)
    assert answer.status_code == 200, answer.text
    events = [orjson.loads(event_data(e)) for e in EventSplitter().feed(answer.content)]
    assert [e["type"] for e in events][-2:] == ["message_delta", "message_stop"]
    sent = site.fake.requests_for("fake-ok")[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "You are Claude Code."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "system", "content": "Stay terse."},
        {"role": "user", "content": "and now?"},
    ]
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"] and sent["tool_choice"] == "auto"
    dropped = {"thinking", "metadata", "context_management", "output_config", "system", "cache_control"}
    assert not dropped & set(sent)
    # The same body on an anthropic channel goes as it came (the fake refuses fields Anthropic does not know).
    # (Less the system turn inside `messages`, which Anthropic's own API refuses.)
    native_body = {**body, "model": "claude-ok", "messages": [m for m in body["messages"] if m["role"] != "system"]}
    native = httpx.post(site.url + "/v1/messages?beta=true", json=native_body, headers=headers)
    assert native.status_code == 200, native.text
    seen = site.fake.requests_for("claude-ok")[-1]
    assert seen.body == native_body and seen.headers["anthropic-beta"] == headers["anthropic-beta"]
    assert len(billed(site, "m-claude-code")) == 2


def test_the_echo_channel_answers_messages(site: Gateway) -> None:
    key = site.create_key("m-echo")
    messages = client(site, key).messages
    message = messages.create(model="echo-1", max_tokens=50, messages=[{"role": "user", "content": "one two three"}])
    assert message.content[0].text == "one two three"  # type: ignore[union-attr]
    with messages.stream(model="echo-1", max_tokens=2, messages=[{"role": "user", "content": "one two three"}]) as s:
        streamed = s.get_final_message()
    assert streamed.content[0].text == "one two " and streamed.stop_reason == "max_tokens"  # type: ignore[union-attr]
    assert [r["completion_tokens"] for r in billed(site, "m-echo")] == [3, 2]


# --- errors in Anthropic's shape, broken streams, callers that leave ----------------------------------------------


def test_errors_have_anthropic_s_shape_and_statuses(site: Gateway) -> None:
    with pytest.raises(anthropic.AuthenticationError) as no_key:
        client(site, "sk-tb-nobody").messages.create(model="claude-ok", max_tokens=5, messages=HELLO)
    assert no_key.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Incorrect API key provided."},
    }
    key = site.create_key("m-errors", credit_usd="0.000001")
    with pytest.raises(anthropic.BadRequestError, match="credit balance is too low") as broke:
        client(site, key).messages.create(model="claude-ok", max_tokens=5000, messages=HELLO)
    assert broke.value.status_code == 400 and broke.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    rich = site.create_key("m-errors-rich")
    with pytest.raises(anthropic.NotFoundError):
        client(site, rich).messages.create(model="nobody-serves-it", max_tokens=5, messages=HELLO)
    missing = httpx.post(
        site.url + "/v1/messages", json={"model": "claude-ok", "messages": HELLO}, headers={"x-api-key": rich}
    )
    assert (missing.status_code, missing.json()["type"], missing.json()["error"]["type"]) == (
        400,
        "error",
        "invalid_request_error",
    )
    assert "max_tokens" in missing.json()["error"]["message"]
    for model in ("claude-400", "fake-400"):  # an upstream's refusal, in Anthropic's shape whichever the channel
        with pytest.raises(anthropic.BadRequestError) as refused:
            client(site, rich).messages.create(model=model, max_tokens=5, messages=HELLO)
        assert refused.value.body["type"] == "error" and refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.InternalServerError) as down:
        client(site, rich).messages.create(model="fake-500", max_tokens=5, messages=HELLO)
    assert down.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_head_of_the_root_is_answered_without_a_key_or_an_error(site: Gateway) -> None:
    answer = httpx.head(site.url + "/")
    assert answer.status_code == 200 and answer.content == b""


@pytest.mark.parametrize("model", ["claude-break", "claude-error-event", "fake-break"])
def test_a_stream_broken_mid_way_ends_with_anthropic_s_error_event_and_bills_what_went_out(
    site: Gateway, model: str
) -> None:
    name = f"m-break-{model}"
    key = site.create_key(name)
    body = {"model": model, "max_tokens": 50, "messages": HELLO, "stream": True}
    answer = httpx.post(site.url + "/v1/messages", json=body, headers={"x-api-key": key})
    splitter = EventSplitter()
    events = splitter.feed(answer.content)
    assert splitter.tail == b"" and b"event: message_stop" not in answer.content
    assert events[-1].startswith(b"event: error\n")
    error = orjson.loads(event_data(events[-1]))
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert any(b'"text_delta"' in e for e in events)  # the first piece went out before the break
    with pytest.raises(anthropic.APIStatusError):
        with client(site, key).messages.stream(model=model, max_tokens=50, messages=HELLO) as stream:
            stream.get_final_message()
    settled_rows(site, name, 2)  # both broken streams' rows, before the books are read
    rows = billed(site, name)
    assert {r["end_reason"] for r in rows} == {"upstream_error"}
    assert all(r["usage_source"] == "estimated" and r["completion_tokens"] >= 1 and r["cost"] > 0 for r in rows)


@pytest.mark.parametrize("model", ["claude-hold", "fake-hold"])
def test_a_caller_that_leaves_mid_stream_pays_for_what_it_was_sent(site: Gateway, model: str) -> None:
    name = f"m-gone-{model}"
    key = site.create_key(name)
    site.fake.arm()
    body = {"model": model, "max_tokens": 50, "messages": HELLO, "stream": True}
    text = ""
    with httpx.stream("POST", site.url + "/v1/messages", json=body, headers={"x-api-key": key}, timeout=20) as answer:
        splitter = EventSplitter()
        for chunk in answer.iter_raw():
            for event in splitter.feed(chunk):
                delta = orjson.loads(event_data(event)).get("delta") or {}
                text += delta.get("text", "")
            if text.endswith(("claude", "fake")):  # every piece arrived; the upstream holds its end
                break
    assert site.fake.hung_up.acquire(timeout=10), "the upstream never saw the gateway hang up"
    row = settled_row(site, name, lambda r: r["end_reason"] == "client_gone")
    # Counted offline: the prompt the upstream was sent (native, or as chat), and the text delivered.
    sent = body if model.startswith("claude") else chat_request(body)
    assert row["usage_source"] == "estimated"
    assert (
        (row["prompt_tokens"], row["completion_tokens"]) == (prompt_tokens(sent, model), count(text, model)) != (0, 0)
    )
    assert row["cost"] == cost_of(
        CLAUDE_PRICE if model.startswith("claude") else CHAT_PRICE,
        prompt=row["prompt_tokens"],
        completion=row["completion_tokens"],
    )
    billed(site, name)
