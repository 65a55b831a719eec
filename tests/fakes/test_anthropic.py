"""The fake Anthropic upstream answers as Anthropic does: the official SDK reads it, streams included."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from tests.fakes import anthropic as fake
from tests.fakes.upstream import FakeUpstream

KEY = "sk-ant-fake-key"


@pytest.fixture
def client(upstream: tuple[FakeUpstream, str]) -> Any:
    with anthropic.Anthropic(api_key=KEY, base_url=upstream[1], max_retries=0) as client:
        yield client


def ask(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], **extra}


def test_fake_anthropic_answers_json_the_sdk_reads(client: Any, upstream: tuple[FakeUpstream, str]) -> None:
    message = client.messages.create(**ask("claude-ok-json"))
    assert [b.text for b in message.content] == [fake.TEXT]
    assert (message.stop_reason, message.usage.input_tokens, message.usage.output_tokens) == ("end_turn", 12, 3)
    [seen] = upstream[0].requests_for("claude-ok-json")
    assert (
        seen.path == "/v1/messages"
        and KEY in (seen.headers.get("x-api-key"), seen.headers.get("authorization", "")[7:])
        and seen.headers["anthropic-version"]
    )


def test_fake_anthropic_streams_events_the_sdk_assembles(client: Any) -> None:
    with client.messages.stream(**ask("claude-cached")) as stream:
        names = [e.type for e in stream]
        message = stream.get_final_message()
    assert names[0] == "message_start" and names[-1] == "message_stop" and "content_block_delta" in names
    assert message.content[0].text == fake.TEXT
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (5, 6, 3)
    assert usage.output_tokens == 3


def test_fake_anthropic_streams_a_tool_use_and_answers_its_result(client: Any) -> None:
    with client.messages.stream(**ask("claude-tool")) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    tool = message.content[1]
    assert (tool.type, tool.name, tool.input) == ("tool_use", fake.TOOL_NAME, fake.TOOL_INPUT)
    turns = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "sunny"}]},
    ]
    answer = client.messages.create(model="claude-tool", max_tokens=64, messages=turns)
    assert answer.content[0].text == "The tool said: sunny"


def test_fake_anthropic_counts_tokens(client: Any) -> None:
    counted = client.messages.count_tokens(model="claude-ok", messages=[{"role": "user", "content": "hi"}])
    assert counted.input_tokens == fake.COUNT_TOKENS


def test_fake_anthropic_stops_at_a_stop_sequence_and_at_max_tokens(client: Any) -> None:
    stopped = client.messages.create(**ask("claude-ok", stop_sequences=[" claude"]))
    assert (stopped.content[0].text, stopped.stop_reason, stopped.stop_sequence) == (
        "Hello from",
        "stop_sequence",
        " claude",
    )
    cut = client.messages.create(**{**ask("claude-ok"), "max_tokens": 1})
    assert (cut.content[0].text, cut.stop_reason) == ("Hello", "max_tokens")


@pytest.mark.parametrize(
    ("model", "error", "status"),
    [
        ("claude-529", anthropic.InternalServerError, 529),
        ("claude-429", anthropic.RateLimitError, 429),
        ("claude-400", anthropic.BadRequestError, 400),
    ],
)
def test_fake_anthropic_fails_as_anthropic_does(client: Any, model: str, error: type, status: int) -> None:
    with pytest.raises(error) as caught:
        client.messages.create(**ask(model))
    assert caught.value.status_code == status and caught.value.body["type"] == "error"  # type: ignore[attr-defined]


def test_fake_anthropic_sends_the_error_event_mid_stream(client: Any) -> None:
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        with client.messages.stream(**ask("claude-error-event")) as stream:
            stream.get_final_message()


@pytest.mark.parametrize(
    ("headers", "body", "status", "says"),
    [
        ({"anthropic-version": "2023-06-01"}, ask("claude-ok"), 401, "x-api-key"),
        ({"x-api-key": KEY}, ask("claude-ok"), 400, "anthropic-version"),
        ({"x-api-key": KEY, "anthropic-version": "2023-06-01"}, {**ask("claude-ok"), "n": 2}, 400, "n: Extra"),
        ({"x-api-key": KEY, "anthropic-version": "2023-06-01"}, {"model": "c", "messages": []}, 400, "max_tokens"),
        (
            {"x-api-key": KEY, "anthropic-version": "2023-06-01"},
            ask("c", messages=[{"role": "system", "content": "be kind"}]),
            400,
            "role",
        ),
        (
            {"x-api-key": KEY, "anthropic-version": "2023-06-01"},
            ask("c", messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x"}]}]),
            400,
            "tool_use_id",
        ),
    ],
)
def test_fake_anthropic_refuses_what_anthropic_refuses(
    upstream: tuple[FakeUpstream, str], headers: dict[str, str], body: dict[str, Any], status: int, says: str
) -> None:
    answer = httpx.post(upstream[1] + "/v1/messages", json=body, headers=headers)
    assert answer.status_code == status and says in answer.json()["error"]["message"]
