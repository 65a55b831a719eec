"""The Responses API <-> chat, as pure functions: requests (responses.py), answers (responses_answer.py)
and streams (responses_stream.py), the answers checked against OpenAI's Responses schemas."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.schemas import validate_event, validate_responses
from tokenbridge.errors import InvalidRequest
from tokenbridge.responses import chat_request
from tokenbridge.responses_answer import response_from_chat
from tokenbridge.responses_stream import ResponsesEvents
from tokenbridge.upstream.sse import event_data

WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files."}
NAMESPACE = {"type": "namespace", "name": "agents", "description": "d", "tools": [{**WEATHER, "name": "spawn"}]}
TOOLS = [WEATHER, PATCH, NAMESPACE, {"type": "web_search"}, {"type": "tool_search"}, {"type": "image_generation"}]


def test_instructions_and_a_string_input_become_a_system_and_a_user_message() -> None:
    chat = chat_request({"model": "m", "instructions": "Be brief.", "input": "hi", "max_output_tokens": 9})
    assert chat == {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "max_tokens": 9,
    }


def test_input_items_become_chat_messages_with_tool_calls_joined_and_reasoning_dropped() -> None:
    items = [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Rules."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Look"},
                                     {"type": "input_image", "image_url": "data:image/png;base64,xx", "detail": "low"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "On it."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "spawn", "namespace": "agents", "arguments": "{}"},
        {"type": "custom_tool_call", "call_id": "c3", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "spawned"}]},
        {"type": "custom_tool_call_output", "call_id": "c3", "output": "patched"},
        {"type": "web_search_call", "id": "ws", "status": "completed"},
    ]  # fmt: skip
    messages = chat_request({"model": "m", "input": items})["messages"]
    assert messages == [
        {"role": "system", "content": "Rules."},
        {"role": "user", "content": [{"type": "text", "text": "Look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,xx",
                                                                         "detail": "low"}}]},
        {"role": "assistant", "content": "On it.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "agents__spawn", "arguments": "{}"}},
            {"id": "c3", "type": "function", "function": {"name": "apply_patch",
                                                          "arguments": '{"input":"*** Begin Patch"}'}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "spawned"},
        {"role": "tool", "tool_call_id": "c3", "content": "patched"},
    ]  # fmt: skip


def test_tools_functions_carried_namespaces_flattened_custom_as_one_string_built_ins_dropped() -> None:
    chat = chat_request({"model": "m", "input": "x", "tools": TOOLS, "tool_choice": "required",
                         "parallel_tool_calls": True})  # fmt: skip
    functions = [t["function"] for t in chat["tools"]]
    assert all(t["type"] == "function" for t in chat["tools"])
    assert [f["name"] for f in functions] == ["get_weather", "apply_patch", "agents__spawn"]
    assert functions[1]["parameters"]["required"] == ["input"] and functions[1]["description"] == "Edit files."
    assert (chat["tool_choice"], chat["parallel_tool_calls"]) == ("required", True)


@pytest.mark.parametrize(
    ("choice", "chat"),
    [
        ({"type": "function", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
        ({"type": "custom", "name": "apply_patch"}, {"type": "function", "function": {"name": "apply_patch"}}),
        ({"type": "allowed_tools", "mode": "required", "tools": []}, "required"),
        ({"type": "web_search_preview"}, None),  # its tool was dropped: leave the choice to the model
    ],
)
def test_tool_choice_in_chat_shape(choice: Any, chat: Any) -> None:
    assert chat_request({"model": "m", "input": "x", "tools": TOOLS, "tool_choice": choice}).get("tool_choice") == chat


def test_only_built_in_tools_send_no_tools_at_all() -> None:
    chat = chat_request({"model": "m", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": "auto",
                         "parallel_tool_calls": False})  # fmt: skip
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(chat)


@pytest.mark.parametrize(
    ("fmt", "response_format"),
    [
        ({"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True},
         {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True}}),
        ({"type": "json_object"}, {"type": "json_object"}),
        ({"type": "text"}, None),
    ],
)  # fmt: skip
def test_text_format_becomes_response_format(fmt: Any, response_format: Any) -> None:
    chat = chat_request({"model": "m", "input": "x", "text": {"format": fmt, "verbosity": "low"}})
    assert chat.get("response_format") == response_format


def test_what_chat_need_not_honour_is_ignored_and_a_stream_asks_for_usage() -> None:
    ignored = {"reasoning": {"effort": "high"}, "include": ["reasoning.encrypted_content"], "store": False,
               "prompt_cache_key": "k", "client_metadata": {"a": "b"}, "metadata": {"x": "y"}, "truncation": "auto",
               "service_tier": "auto", "safety_identifier": "s"}  # fmt: skip
    chat = chat_request({"model": "m", "input": "x", "stream": True, "temperature": 0.3, "top_p": 0.5, **ignored})
    assert chat == {"model": "m", "stream": True, "temperature": 0.3, "top_p": 0.5,
                    "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": True}}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}, "input[0].content[0].file_id"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0]"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f"}]}, "input[0].arguments"),
        ({"input": [{"type": "something_new"}]}, "input[0]"),
    ],
)  # fmt: skip
def test_what_chat_cannot_honour_is_refused_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        chat_request({"model": "m", "input": "x", **body})
    assert info.value.param == param


def test_background_false_and_null_previous_response_pass() -> None:
    assert chat_request({"model": "m", "input": "x", "background": False, "previous_response_id": None})


CHAT_USAGE = {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27,
              "prompt_tokens_details": {"cached_tokens": 5}, "completion_tokens_details": {"reasoning_tokens": 2}}  # fmt: skip


def test_a_chat_answer_is_a_response_with_the_tools_named_as_declared() -> None:
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "agents__spawn", "arguments": "{}"}},
        {"id": "c2", "type": "function", "function": {"name": "apply_patch", "arguments": '{"input": "*** Begin"}'}},
    ]
    chat = {"id": "chatcmpl-9", "object": "chat.completion", "created": 1700000000, "model": "gpt-x",
            "choices": [{"index": 0, "finish_reason": "tool_calls",
                         "message": {"role": "assistant", "content": "Working.", "tool_calls": calls}}],
            "usage": CHAT_USAGE}  # fmt: skip
    request = {"model": "m", "input": "x", "tools": TOOLS, "instructions": "Be brief.", "temperature": 0.2}
    response = validate_responses("Response", response_from_chat(chat, request))
    assert (response["id"], response["status"], response["model"], response["instructions"]) == (
        "resp_9", "completed", "gpt-x", "Be brief."
    )  # fmt: skip
    message, spawn, patch = response["output"]
    assert message["content"][0]["text"] == "Working." and message["id"] == "msg_9"
    assert (spawn["type"], spawn["name"], spawn["namespace"], spawn["call_id"]) == (
        "function_call",
        "spawn",
        "agents",
        "c1",
    )
    assert (patch["type"], patch["name"], patch["input"]) == ("custom_tool_call", "apply_patch", "*** Begin")
    assert response["usage"] == {
        "input_tokens": 20, "input_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 0},
        "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 27,
    }  # fmt: skip


def test_a_chat_answer_cut_at_its_length_is_an_incomplete_response_and_no_usage_is_left_out() -> None:
    chat = {"id": "chatcmpl-1", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Hel"}}]}  # fmt: skip
    response = validate_responses("Response", response_from_chat(chat, {"model": "m", "input": "x"}))
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert "usage" not in response


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: Any = None) -> bytes:
    body: dict[str, Any] = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
                            "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    if usage is not None:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


def translate(chunks: list[bytes], request: dict[str, Any]) -> list[dict[str, Any]]:
    events = ResponsesEvents(request)
    out = b"".join(events.translate(c) for c in [*chunks, b"data: [DONE]\n\n"])
    parsed = [orjson.loads(event_data(block + b"\n\n")) for block in out.split(b"\n\n") if block]
    assert events.sequence == len(parsed)
    for event in parsed:
        validate_event(event)
    assert [e["sequence_number"] for e in parsed] == list(range(len(parsed)))
    return parsed


def test_a_chat_stream_becomes_the_responses_event_sequence() -> None:
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    chunks = [
        chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
        chunk({"tool_calls": [call]}), chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}), chunk({}, "tool_calls"),
        chunk(usage=CHAT_USAGE),
    ]  # fmt: skip
    events = translate(chunks, {"model": "m", "input": "x", "tools": [WEATHER]})
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed",
    ]  # fmt: skip
    final = events[-1]["response"]
    assert [item["id"] for item in final["output"]] == ["msg_7", "fc_c1"]
    assert (
        final["output"][1]["arguments"] == '{"a": 1}' and final["usage"]["input_tokens_details"]["cached_tokens"] == 5
    )
    for event in events:
        if "item_id" in event:
            assert final["output"][event["output_index"]]["id"] == event["item_id"]


def test_a_custom_tool_call_streams_its_input_whole_at_its_end() -> None:
    call = {"index": 0, "id": "c3", "type": "function", "function": {"name": "apply_patch", "arguments": '{"input":'}}
    chunks = [chunk({"tool_calls": [call]}), chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "ok"}'}}]})]
    events = translate(chunks, {"model": "m", "input": "x", "tools": [PATCH]})
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" not in kinds
    [delta] = [e for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert delta["delta"] == "ok" and events[-1]["response"]["output"][0]["input"] == "ok"


def test_text_after_a_tool_call_keeps_both_in_output_order() -> None:
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    events = translate([chunk({"tool_calls": [call]}), chunk({"content": "after"})], {"model": "m", "input": "x"})
    assert [item["type"] for item in events[-1]["response"]["output"]] == ["function_call", "message"]


def test_a_stream_cut_at_its_length_ends_incomplete_and_an_empty_one_still_ends() -> None:
    events = translate([chunk({"content": "Hel"}, "length")], {"model": "m", "input": "x"})
    assert events[-1]["type"] == "response.incomplete"
    assert [e["type"] for e in translate([], {"model": "m", "input": "x"})] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]


def test_a_refusal_streams_as_the_message_second_content_part() -> None:
    events = translate([chunk({"refusal": "I can"}), chunk({"refusal": "not."}), chunk({}, "stop")],
                       {"model": "m", "input": "x"})  # fmt: skip
    refusals = [e for e in events if e["type"] == "response.refusal.delta"]
    assert [e["delta"] for e in refusals] == ["I can", "not."] and {e["content_index"] for e in refusals} == {1}
    [message] = events[-1]["response"]["output"]
    assert message["content"][1] == {"type": "refusal", "refusal": "I cannot."}
    assert [e["type"] for e in events if e["type"].endswith(".done")][-1] == "response.output_item.done"
