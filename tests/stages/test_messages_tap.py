"""The `messages` dialect (stages/messages_tap.py): Anthropic's usage, read with one meaning for every row."""

from __future__ import annotations

from typing import Any

import orjson

from tokenbridge.money import Usage
from tokenbridge.stages.dialects import DIALECTS, MESSAGES
from tokenbridge.stages.messages_tap import MessagesTap, message_texts, usage_from_message, usage_of

START_USAGE = {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 40, "cache_creation_input_tokens": 5}


def event(kind: str, **data: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def stream(output_tokens: int = 7) -> list[bytes]:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "usage": START_USAGE}
    return [
        event("message_start", message=message),
        event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        event("ping"),
        event("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hello"}),
        event("content_block_delta", index=0, delta={"type": "text_delta", "text": " there"}),
        event("content_block_stop", index=0),
        event("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": output_tokens}),
        event("message_stop"),
    ]


def test_the_messages_wire_has_its_dialect_ending_at_message_stop() -> None:
    assert DIALECTS["messages"] is MESSAGES
    assert MESSAGES.end == "message_stop"


def test_anthropic_input_tokens_exclude_cache_reads_and_writes_so_the_prompt_adds_them() -> None:
    assert usage_of(START_USAGE) == Usage(prompt_tokens=55, completion_tokens=1, cached_tokens=40, cache_write_tokens=5)
    assert usage_of({"input_tokens": 3, "output_tokens": 2, "cache_read_input_tokens": None}) == Usage(3, 2)


def test_impossible_anthropic_counts_are_no_usage() -> None:
    for counts in ({"input_tokens": -1, "output_tokens": 2}, {"input_tokens": 1}, {"input_tokens": True, "output_tokens": 1},
                   {"input_tokens": 1, "output_tokens": 1, "cache_read_input_tokens": 10**9}, "usage"):  # fmt: skip
        assert usage_of(counts) is None


def test_a_stream_is_read_for_its_usage_and_end_and_passed_on_byte_for_byte() -> None:
    tap = MessagesTap(strip=True, request_id="r")  # strip is a chat matter: nothing is cut here
    for data in stream():
        assert tap.feed(data) is data  # no copy
    assert tap.finish() == b""
    assert tap.done
    assert tap.usage == Usage(prompt_tokens=55, completion_tokens=7, cached_tokens=40, cache_write_tokens=5)
    assert "".join(tap.texts()) == "Hello there"


def test_the_usage_of_message_start_alone_is_not_taken_as_the_answer_s() -> None:
    tap = MessagesTap(strip=False)
    tap.feed(b"".join(stream()[:4]))  # cut after the first text: estimated from what was delivered
    assert tap.usage is None and not tap.done
    assert tap.texts() == ["Hello"]


def test_a_message_delta_that_repeats_the_input_side_updates_it() -> None:
    tap = MessagesTap(strip=False)
    tap.feed(stream()[0])
    tap.feed(
        event(
            "message_delta", delta={}, usage={"input_tokens": 12, "output_tokens": 9, "cache_read_input_tokens": None}
        )
    )
    assert tap.usage == Usage(prompt_tokens=57, completion_tokens=9, cached_tokens=40, cache_write_tokens=5)


def test_events_split_anywhere_come_out_whole_and_a_last_message_stop_without_its_blank_line_ends_the_stream() -> None:
    tap = MessagesTap(strip=False)
    data = b"".join(stream())[:-2]
    out = b"".join(tap.feed(data[i : i + 7]) for i in range(0, len(data), 7)) + tap.finish()
    assert out == data + b"\n\n"
    assert tap.done and tap.usage is not None


def test_tool_use_and_thinking_count_as_answer_text() -> None:
    tap = MessagesTap(strip=False)
    tap.feed(
        event(
            "content_block_start", index=1, content_block={"type": "tool_use", "id": "t", "name": "Bash", "input": {}}
        )
    )
    tap.feed(event("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '{"command":'}))
    tap.feed(event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "hmm"}))
    assert tap.texts() == ["Bash", '{"command":', "hmm"]


def test_a_json_answer_has_its_usage_and_text() -> None:
    answer = {
        "type": "message",
        "content": [
            {"type": "text", "text": "Hi"},
            {"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": "ls"}},
        ],
        "usage": {"input_tokens": 4, "output_tokens": 6, "cache_creation_input_tokens": 2},
    }
    assert usage_from_message(answer) == Usage(6, 6, 0, 2)
    assert message_texts(answer) == ["Hi", "Bash", '{"command":"ls"}']
    assert usage_from_message([]) is None and message_texts({"content": "x"}) == []
