"""A chat stream as Anthropic's event sequence (tokenbridge/messages_stream.py), event by event."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tokenbridge.errors import UpstreamError
from tokenbridge.messages_stream import MessagesEvents
from tokenbridge.upstream.sse import EventSplitter, event_data


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body = {"id": "chatcmpl-1", "model": "up-model", "object": "chat.completion.chunk", "choices": choices, **extra}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def run(*events: bytes) -> list[tuple[str, dict[str, Any]]]:
    translator = MessagesEvents("public")
    out = b"".join(translator.translate(e) for e in events)
    parsed = []
    for event in EventSplitter().feed(out):
        name = event.split(b"\n", 1)[0].removeprefix(b"event: ").decode()
        data = orjson.loads(event_data(event))
        assert data["type"] == name
        parsed.append((name, data))
    return parsed


USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}}


def test_a_text_stream_is_anthropic_s_event_sequence_with_usage_in_message_delta() -> None:
    events = run(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        chunk(None, usage=USAGE),
        b"data: [DONE]\n\n",
    )
    names = [name for name, _ in events]
    assert names == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]  # fmt: skip
    start = events[0][1]["message"]
    assert (start["id"], start["model"], start["role"], start["content"]) == ("msg_1", "up-model", "assistant", [])
    assert [e["delta"]["text"] for n, e in events if n == "content_block_delta"] == ["Hel", "lo"]
    assert events[5][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 10,
            "output_tokens": 3,
            "cache_read_input_tokens": 2,
            "cache_creation_input_tokens": 0,
        },
    }


def test_tool_calls_become_tool_use_blocks_with_input_json_deltas() -> None:
    first = {"index": 0, "id": "call_a", "type": "function", "function": {"name": "Bash", "arguments": ""}}
    second = {"index": 1, "id": "call_b", "type": "function", "function": {"name": "Read", "arguments": '{"p":1}'}}
    events = run(
        chunk({"role": "assistant", "content": "Sure."}),
        chunk({"tool_calls": [first]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"command":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "ls"}'}}]}),
        chunk({"tool_calls": [second]}),
        chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    )
    starts = [e for n, e in events if n == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1, 2]
    assert starts[1]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "Bash", "input": {}}
    assert starts[2]["content_block"]["name"] == "Read"
    pieces = [(e["index"], e["delta"]) for n, e in events if n == "content_block_delta"]
    assert pieces == [
        (0, {"type": "text_delta", "text": "Sure."}),
        (1, {"type": "input_json_delta", "partial_json": '{"command":'}),
        (1, {"type": "input_json_delta", "partial_json": ' "ls"}'}),
        (2, {"type": "input_json_delta", "partial_json": '{"p":1}'}),
    ]
    assert [e["index"] for n, e in events if n == "content_block_stop"] == [0, 1, 2]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_a_length_finish_is_max_tokens_and_a_stream_without_usage_says_zero() -> None:
    events = run(chunk({"content": "x"}), chunk({}, "length"), b"data: [DONE]\n\n")
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert events[-2][1]["usage"]["output_tokens"] == 0


def test_an_empty_stream_still_starts_and_stops() -> None:
    assert [name for name, _ in run(b"data: [DONE]\n\n")] == ["message_start", "message_delta", "message_stop"]


def test_junk_is_dropped_and_an_upstream_error_ends_the_stream_as_the_gateway_s_error() -> None:
    events = run(chunk({"content": "a"}), b": keep-alive\n\n", b"data: not json\n\n", b"data: [1]\n\n")
    assert [name for name, _ in events].count("content_block_delta") == 1 and events[-1][0] == "content_block_delta"
    with pytest.raises(UpstreamError, match="The upstream failed mid-stream: boom"):  # intake sends Anthropic's event
        run(chunk({"content": "a"}), b'data: {"error": {"message": "boom"}}\n\n')


def test_a_chat_server_s_reasoning_comes_as_a_thinking_block_before_the_text() -> None:
    events = run(chunk({"reasoning_content": "Let me"}), chunk({"reasoning_content": " think."}), chunk({"content": "Hi"}),
                 chunk({}, "stop"), b"data: [DONE]\n\n")  # fmt: skip
    starts = [e["content_block"] for n, e in events if n == "content_block_start"]
    assert starts == [{"type": "thinking", "thinking": "", "signature": ""}, {"type": "text", "text": ""}]
    deltas = [e["delta"] for n, e in events if n == "content_block_delta"]
    assert deltas[:2] == [
        {"type": "thinking_delta", "thinking": "Let me"},
        {"type": "thinking_delta", "thinking": " think."},
    ]
