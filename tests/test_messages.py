"""Messages <-> chat, the pure translations (tokenbridge/messages.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tokenbridge.messages import anthropic_usage, chat_request, message_response, tool_input


def request(**fields: Any) -> dict[str, Any]:
    return chat_request({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **fields})


def test_the_plain_fields_are_carried_over_and_a_stream_asks_for_usage() -> None:
    chat = request(temperature=0.3, top_p=0.9, stop_sequences=["\n\nHuman:"], stream=True, top_k=5)
    assert chat == {
        "model": "m", "max_tokens": 10, "temperature": 0.3, "top_p": 0.9, "stop": ["\n\nHuman:"], "stream": True,
        "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "hi"}],
    }  # fmt: skip


def test_system_blocks_and_system_turns_become_system_messages_without_cache_control() -> None:
    blocks = [
        {"type": "text", "text": "One.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Two."},
    ]
    chat = chat_request({
        "model": "m", "max_tokens": 5, "system": blocks,
        "messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": [{"type": "text", "text": "Three."}]}],
    })  # fmt: skip
    assert chat["messages"] == [
        {"role": "system", "content": "One.\n\nTwo."},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "Three."},
    ]


def test_image_and_document_blocks_become_chat_parts() -> None:
    content = [
        {"type": "text", "text": "Look:"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
        {"type": "image", "source": {"type": "url", "url": "https://x.example/a.png"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
            "title": "a.pdf",
        },
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}},
        {"type": "search_result", "source": "x"},  # nothing chat can carry: dropped
    ]
    [user] = request(messages=[{"role": "user", "content": content}])["messages"]
    assert user["content"] == [
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
        {"type": "image_url", "image_url": {"url": "https://x.example/a.png"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}},
        {"type": "text", "text": "plain words"},
    ]


def test_tool_use_and_tool_result_become_tool_calls_and_tool_messages_in_order() -> None:
    turns = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "let me see", "signature": "c2ln"},
            {"type": "redacted_thinking", "data": "xyz"},
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "noon", "is_error": True},
            {"type": "text", "text": "thanks"},
        ]},
    ]  # fmt: skip
    messages = request(messages=turns)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "Looking.",
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: noon"},
        {"role": "user", "content": "thanks"},
    ]


def test_an_assistant_turn_of_only_tool_calls_has_no_content() -> None:
    turn = {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]}
    assert request(messages=[{"role": "user", "content": "x"}, turn])["messages"][1]["content"] is None


def test_an_image_in_a_tool_result_follows_it_in_a_user_message() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
    result = {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "shot:"}, image]}
    messages = request(messages=[{"role": "user", "content": [result]}])["messages"]
    assert messages == [
        {"role": "tool", "tool_call_id": "t", "content": "shot:"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tools_and_tool_choice_are_mapped(choice: dict[str, Any], expected: Any) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = [
        {
            "name": "get_weather",
            "description": "Weather",
            "input_schema": schema,
            "cache_control": {"type": "ephemeral"},
        },
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},  # a server tool: runs at Anthropic only
    ]
    chat = request(tools=tools, tool_choice={**choice, "disable_parallel_tool_use": True})
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": schema, "description": "Weather"}}
    ]
    assert chat["tool_choice"] == expected and chat["parallel_tool_calls"] is False


def test_what_chat_cannot_carry_is_dropped_not_refused() -> None:
    chat = request(
        thinking={"type": "adaptive"}, metadata={"user_id": "u"}, context_management={"edits": []},
        output_config={"effort": "low"}, service_tier="auto", container="c", mcp_servers=[], top_k=3,
    )  # fmt: skip
    assert set(chat) == {"model", "max_tokens", "messages"}


def test_a_chat_answer_becomes_a_message_with_anthropic_usage() -> None:
    chat = {
        "id": "chatcmpl-abc", "model": "gpt-x", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me check.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}],
        }}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 20}},
    }  # fmt: skip
    assert message_response(chat) == {
        "id": "msg_abc", "type": "message", "role": "assistant", "model": "gpt-x",
        "content": [{"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 9, "cache_read_input_tokens": 20, "cache_creation_input_tokens": 0},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("finish", "stop"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal"), (None, "end_turn")],
)
def test_finish_reasons_become_stop_reasons(finish: str | None, stop: str) -> None:
    answer = message_response({"choices": [{"message": {"content": "x"}, "finish_reason": finish}]})
    assert answer["stop_reason"] == stop


def test_odd_answers_and_usages_make_no_negative_or_broken_counts() -> None:
    assert message_response({"choices": "nope"})["content"] == []
    assert anthropic_usage({"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}})["input_tokens"] == 0
    assert anthropic_usage(None) == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    assert tool_input("not json") == tool_input("[1]") == tool_input(None) == {}


def test_a_chat_server_s_reasoning_becomes_an_unsigned_thinking_block() -> None:
    chat = {"choices": [{"message": {"content": "4", "reasoning_content": "2+2"}, "finish_reason": "stop"}]}
    assert message_response(chat)["content"] == [
        {"type": "thinking", "thinking": "2+2", "signature": ""},
        {"type": "text", "text": "4"},
    ]
