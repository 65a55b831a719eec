"""Chat Completions -> Anthropic Messages and back, as pure functions (tokenbridge/chat_messages.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.fakes import anthropic as fake
from tests.schemas import validate
from tokenbridge.chat_messages import DROPPED, REFUSED, chat_response, chat_usage, messages_request
from tokenbridge.errors import InvalidRequest

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}}


def translate(body: dict[str, Any]) -> dict[str, Any]:
    return messages_request({"model": "claude-x", "max_tokens": 4096, **body})


def refusal(body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        translate(body)
    return info.value


def test_messages_request_maps_system_and_developer_messages_to_system() -> None:
    out = translate(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "user", "content": "hi"},
            ]
        }
    )
    assert out["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use French."}]
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_messages_request_takes_the_lower_of_max_tokens_and_max_completion_tokens() -> None:
    hi = [{"role": "user", "content": "hi"}]
    assert translate({"messages": hi, "max_tokens": 50})["max_tokens"] == 50
    assert translate({"messages": hi, "max_tokens": 50, "max_completion_tokens": 20})["max_tokens"] == 20
    assert translate({"messages": hi, "max_tokens": None, "max_completion_tokens": 20})["max_tokens"] == 20
    with pytest.raises(InvalidRequest):  # the adapter always gives one (tests/test_adapters.py)
        messages_request({"model": "m", "messages": hi})


def test_messages_request_maps_sampling_stop_user_and_stream() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.3, "top_p": 0.9, "stop": "\n\n"}
    out = translate({**body, "user": "u-7", "stream": True, "stream_options": {"include_usage": True}})
    assert (out["temperature"], out["top_p"], out["stop_sequences"]) == (0.3, 0.9, ["\n\n"])
    assert out["metadata"] == {"user_id": "u-7"} and out["stream"] is True
    assert "stream_options" not in out
    assert translate({**body, "stop": ["a", "b"]})["stop_sequences"] == ["a", "b"]


def test_messages_request_maps_images_by_data_url_and_by_url() -> None:
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
    ]
    [turn] = translate({"messages": [{"role": "user", "content": parts}]})["messages"]
    assert turn["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_messages_request_maps_a_tool_round_trip_merging_consecutive_tool_results() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
    ]
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": "Looking.", "tool_calls": calls},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rain"}]},
                {"role": "user", "content": "and so?"},
            ]
        }
    )
    assert [t["role"] for t in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][1]["content"] == [
        {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "rain"},
        {"type": "text", "text": "and so?"},
    ]
    assert fake._turns_refusal(out["messages"]) is None  # as Anthropic checks it


def test_messages_request_maps_tools_and_every_tool_choice() -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": WEATHER}}
    base = {"messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
    out = translate(base)
    assert out["tools"] == [{"name": "get_weather", "input_schema": WEATHER, "description": "Weather."}]
    assert "tool_choice" not in out
    named = {"type": "function", "function": {"name": "get_weather"}}
    expected = [("auto", {"type": "auto"}), ("none", {"type": "none"}), ("required", {"type": "any"})]
    expected.append((named, {"type": "tool", "name": "get_weather"}))
    for choice, anthropic_choice in expected:
        assert translate({**base, "tool_choice": choice})["tool_choice"] == anthropic_choice
    single = translate({**base, "parallel_tool_calls": False})["tool_choice"]
    assert single == {"type": "auto", "disable_parallel_tool_use": True}
    bare = translate({**base, "tools": [{"type": "function", "function": {"name": "now"}}]})["tools"]
    assert bare == [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]


def test_messages_request_leaves_out_what_it_drops_and_anything_unknown() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], **{name: None for name in DROPPED}, "x_unknown": 1}
    out = translate({**body, "seed": 3, "presence_penalty": 0.5})
    assert set(out) == {"model", "messages", "max_tokens"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 2),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("logit_bias", {"1": 5}),
        ("audio", {"voice": "alloy"}),
        ("modalities", ["text", "audio"]),
        ("response_format", {"type": "json_object"}),
        ("functions", [{"name": "f"}]),
    ],
)
def test_messages_request_refuses_what_messages_cannot_honour(field: str, value: Any) -> None:
    error = refusal({"messages": [{"role": "user", "content": "hi"}], field: value})
    assert error.param == field and "Messages" in error.message and field in error.message


def test_messages_request_takes_the_neutral_values_of_refused_fields() -> None:
    neutral = {"n": 1, "logprobs": False, "logit_bias": {}, "response_format": {"type": "text"}, "modalities": ["text"]}
    assert set(translate({"messages": [{"role": "user", "content": "hi"}], **neutral})) == {
        "model",
        "messages",
        "max_tokens",
    }
    assert set(REFUSED) >= {"n", "logprobs"}


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id"),
        ([{"role": "function", "name": "f", "content": "x"}], "messages[0].role"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role"),
        ([{"role": "system", "content": "only a system prompt"}], "messages"),
        ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}], "messages[0].content[0]"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}],
            "messages[0].content[0].image_url.url",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,xx"}}]}],
            "messages[0].content[0].image_url.url",
        ),
        (
            [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}],
                }
            ],
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_messages_request_refuses_messages_it_cannot_map_naming_the_field(messages: list[Any], param: str) -> None:
    assert refusal({"messages": messages}).param == param


def test_messages_request_maps_an_inline_pdf_to_a_document_block() -> None:
    part = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
    [turn] = translate({"messages": [{"role": "user", "content": [part]}]})["messages"]
    assert turn["content"] == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}
    ]
    assert refusal({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]}).param == (
        "messages[0].content[0].file"
    )


def test_chat_usage_counts_every_input_token_and_cache_reads_as_cached() -> None:
    usage = chat_usage(fake.CACHED_USAGE)
    assert usage == {
        "prompt_tokens": 14,
        "completion_tokens": 3,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 6},
    }
    assert chat_usage({"input_tokens": 3}) is None and chat_usage(None) is None


def test_chat_response_turns_a_message_into_a_valid_chat_completion() -> None:
    message = fake.message_json("claude-x", [{"type": "text", "pieces": fake.PIECES}], "end_turn", None)
    out = validate("CreateChatCompletionResponse", chat_response(message))
    assert out["choices"][0]["message"]["content"] == fake.TEXT and out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["prompt_tokens"] == 12 and out["id"] == "chatcmpl-fake01" and out["model"] == "claude-x"


def test_chat_response_turns_tool_use_into_tool_calls() -> None:
    tool = {"type": "tool_use", "id": fake.TOOL_ID, "name": fake.TOOL_NAME, "input": fake.TOOL_INPUT}
    message = fake.message_json("claude-tool", [tool], "tool_use", None)
    out = validate("CreateChatCompletionResponse", chat_response(message))
    reply = out["choices"][0]["message"]
    assert reply["content"] is None and out["choices"][0]["finish_reason"] == "tool_calls"
    [call] = reply["tool_calls"]
    assert (call["id"], call["function"]["name"]) == (fake.TOOL_ID, fake.TOOL_NAME)
    assert orjson.loads(call["function"]["arguments"]) == fake.TOOL_INPUT


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_chat_response_maps_stop_reasons_to_finish_reasons(stop_reason: str, finish: str) -> None:
    message = fake.message_json("claude-x", [{"type": "text", "pieces": ["x"]}], stop_reason, None)
    assert chat_response(message)["choices"][0]["finish_reason"] == finish
