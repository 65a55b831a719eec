"""Anthropic's Messages SSE -> chat chunks (tokenbridge/chat_messages_stream.py), on the fake's own event bytes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.fakes import anthropic as fake
from tests.schemas import validate
from tokenbridge.chat_messages_stream import DONE, ChatEvents
from tokenbridge.errors import UpstreamError
from tokenbridge.upstream.sse import EventSplitter


def chat_stream(events: list[bytes], *, include_usage: bool) -> tuple[list[dict[str, Any]], bytes]:
    translator = ChatEvents(include_usage=include_usage)
    out = b"".join(translator.translate(e) for e in events)
    chunks = [orjson.loads(e.removeprefix(b"data: ")) for e in EventSplitter().feed(out) if e != DONE]
    return chunks, out


def text_stream(model: str = "claude-x") -> list[bytes]:
    return fake.stream_events(model, [{"type": "text", "pieces": fake.PIECES}], "end_turn", None)


def test_chat_events_turn_a_text_stream_into_valid_chat_chunks_ending_in_done() -> None:
    chunks, out = chat_stream(text_stream(), include_usage=False)
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == fake.TEXT
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and all("usage" not in c for c in chunks)
    assert {c["id"] for c in chunks} == {"chatcmpl-fake01"} and out.endswith(DONE) and out.count(b"[DONE]") == 1


def test_chat_events_add_the_usage_chunk_only_when_asked_with_cumulative_counts() -> None:
    chunks, _ = chat_stream(text_stream("claude-cached"), include_usage=True)
    usage = chunks[-1]
    assert usage["choices"] == [] and validate("CreateChatCompletionStreamResponse", usage)
    assert usage["usage"] == {
        "prompt_tokens": 14,
        "completion_tokens": 3,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 6},
    }
    assert chat_stream(text_stream("claude-nousage"), include_usage=True)[0][-1]["choices"]  # no usage: no chunk


def test_chat_events_number_tool_calls_and_stream_their_arguments() -> None:
    tool = {"type": "tool_use", "id": fake.TOOL_ID, "name": fake.TOOL_NAME, "input": fake.TOOL_INPUT}
    events = fake.stream_events("claude-tool", [{"type": "text", "pieces": ["Let me look."]}, tool], "tool_use", None)
    chunks, _ = chat_stream(events, include_usage=False)
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    calls = [d["tool_calls"][0] for c in chunks if "tool_calls" in (d := c["choices"][0]["delta"])]
    assert calls[0] == {
        "index": 0,
        "id": fake.TOOL_ID,
        "type": "function",
        "function": {"name": fake.TOOL_NAME, "arguments": ""},
    }
    assert all(call["index"] == 0 for call in calls)  # the first tool call, though it is content block 1
    assert orjson.loads("".join(call["function"]["arguments"] for call in calls)) == fake.TOOL_INPUT
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_chat_events_raise_anthropics_error_event_with_its_message_masked() -> None:
    translator = ChatEvents(include_usage=True, secret="sk-ant-channel-secret")
    for event in text_stream()[: fake.FIRST_DELTA + 1]:
        assert b"[DONE]" not in translator.translate(event)
    said = "Overloaded (key sk-ant-channel-secret)"
    with pytest.raises(UpstreamError, match=r"mid-stream: Overloaded \(key \*\*\*\)") as info:
        translator.translate(fake.event("error", fake.error_body("overloaded_error", said)))
    assert "sk-ant" not in info.value.message


def test_chat_events_drop_pings_and_pass_what_is_not_messages_json() -> None:
    translator = ChatEvents(include_usage=False)
    assert translator.translate(fake.event("ping", {"type": "ping"})) == b""
    assert translator.translate(b"data: not json\n\n") == b"data: not json\n\n"
    assert translator.translate(b": a comment\n\n") == b": a comment\n\n"
