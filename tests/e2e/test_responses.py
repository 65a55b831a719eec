"""/v1/responses with the official SDK: passed through to a native channel, and answered through chat."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Gateway
from tests.e2e.test_chat import expected_cost
from tests.fakes.responses import TEXT, TOOL_ARGUMENTS, TOOL_DONE, native_answer, native_events, sse
from tests.schemas import validate, validate_event, validate_responses

# model -> (its channel's wire, the usage it bills: prompt, completion, cached)
MODELS = {"fake-resp-ok": ("responses", (12, 3, 8)), "fake-ok": ("chat", (12, 3, 0)), "echo-1": ("chat", None)}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def post(gateway: Gateway, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=20)


def events_of(raw: bytes) -> list[dict[str, Any]]:
    """Each event's data, checked against its `event:` line."""
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        event = orjson.loads(lines["data"])
        assert lines.get("event") == event["type"]
        events.append(event)
    return events


def check_sequence(events: list[dict[str, Any]]) -> None:
    """Every event valid, numbered 0, 1, 2, ...; and the items' indexes and ids agree with the final output."""
    for event in events:
        validate_event(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    for event in events:
        if "output_index" in event and "item_id" in event:
            assert final["output"][event["output_index"]]["id"] == event["item_id"], event
        if event["type"] == "response.output_item.done":
            assert final["output"][event["output_index"]] == event["item"]


def billed(gateway: Gateway, name: str, usage: tuple[int, int, int]) -> None:
    prompt, completion, cached = usage
    cost = expected_cost(prompt, completion, cached)
    rows = gateway.usage(name)
    assert all(
        r["route"] == "responses" and r["usage_source"] == "upstream" and r["end_reason"] == "done" for r in rows
    )
    assert [(r["prompt_tokens"], r["completion_tokens"], r["cached_tokens"], r["cost"]) for r in rows] == [
        (prompt, completion, cached, cost)
    ] * len(rows)
    assert gateway.balance(name) == gateway.ledger_sum(name) == 10**9 - len(rows) * cost


@pytest.mark.parametrize("model", list(MODELS))
def test_responses_sdk_create_stream_and_helper_against_each_wire(gateway: Gateway, model: str) -> None:
    name = f"resp-sdk-{model}"
    client = gateway.client(gateway.create_key(name))
    raw = client.responses.with_raw_response.create(model=model, input="Hello from fake", instructions="Be brief.")
    validate_responses("Response", raw.http_response.json())
    answer = raw.parse()
    assert answer.output_text == TEXT and answer.status == "completed" and answer.usage is not None
    events = list(client.responses.create(model=model, input="Hello from fake", instructions="Be brief.", stream=True))
    check_sequence([e.model_dump(exclude_unset=True) for e in events])
    assert [e.type for e in events][:2] == ["response.created", "response.in_progress"]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == TEXT
    assert events[-1].type == "response.completed" and events[-1].response.usage == answer.usage
    words = [{"role": "user", "content": "Hello from fake"}]
    with client.responses.stream(model=model, input=words, instructions="Be brief.") as stream:  # type: ignore[arg-type]
        final = stream.get_final_response()
    assert final.output_text == TEXT and final.usage == answer.usage
    wire, usage = MODELS[model]
    if usage is None:  # echo: its usage is its own count of the words it echoes
        assert answer.usage.input_tokens > 0 and answer.usage.output_tokens == 3
        return
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == usage[:2]
    assert answer.usage.input_tokens_details.cached_tokens == usage[2]
    path = "/v1/responses" if wire == "responses" else "/v1/chat/completions"
    assert [s.path for s in gateway.fake.requests_for(model)][-3:] == [path] * 3
    billed(gateway, name, usage)


def test_responses_native_bytes_pass_through_untouched(gateway: Gateway) -> None:
    key = gateway.create_key("resp-native-bytes")
    body = {"model": "fake-resp-ok", "input": "hi", "store": True, "reasoning": {"effort": "low"}}
    answer = post(gateway, key, body)
    assert answer.content == orjson.dumps(native_answer("fake-resp-ok"))
    seen = gateway.fake.seen[-1]
    assert seen.path == "/v1/responses" and seen.body == body and "stream_options" not in seen.body
    streamed = post(gateway, key, {**body, "stream": True})
    assert streamed.content == b"".join(sse(e) for e in native_events("fake-resp-ok"))
    assert "stream_options" not in gateway.fake.seen[-1].body  # /responses has no include_usage to ask for


def test_responses_chat_request_carries_what_spec_lists_and_drops_the_rest(gateway: Gateway) -> None:
    key = gateway.create_key("resp-chat-request")
    body = {
        "model": "fake-ok", "instructions": "Be brief.", "max_output_tokens": 50, "temperature": 0.5, "top_p": 0.9,
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Rules."}]},
            {"role": "user", "content": [{"type": "input_text", "text": "Look:"},
                                         {"type": "input_image", "image_url": "https://x.example/a.png"}]},
        ],
        "tools": [WEATHER, {"type": "web_search"}, {"type": "namespace", "name": "ns", "description": "d",
                                                     "tools": [{**WEATHER, "name": "inner"}]}],
        "tool_choice": "auto", "parallel_tool_calls": False, "reasoning": {"effort": "low"}, "store": False,
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k", "client_metadata": {"a": "b"},
        "text": {"verbosity": "low", "format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
        "stream": True,
    }  # fmt: skip
    events = events_of(post(gateway, key, body).content)
    check_sequence(events)
    chat = gateway.fake.seen[-1].body
    assert gateway.fake.seen[-1].path == "/v1/chat/completions"
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Rules."},
        {"role": "user", "content": [{"type": "text", "text": "Look:"},
                                     {"type": "image_url", "image_url": {"url": "https://x.example/a.png",
                                                                         "detail": "auto"}}]},
    ]  # fmt: skip
    assert [t["function"]["name"] for t in chat["tools"]] == ["get_weather", "ns__inner"]
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object"}},
    }
    assert (chat["max_tokens"], chat["temperature"], chat["top_p"], chat["parallel_tool_calls"]) == (
        50,
        0.5,
        0.9,
        False,
    )
    assert chat["stream_options"] == {"include_usage": True} and chat["tool_choice"] == "auto"
    assert not {"reasoning", "include", "store", "prompt_cache_key", "client_metadata", "text", "input"} & set(chat)


@pytest.mark.parametrize(("field", "value"), [("previous_response_id", "resp_1"), ("background", True)])
def test_responses_over_chat_refuse_what_chat_cannot_honour_by_name(gateway: Gateway, field: str, value: Any) -> None:
    name = f"resp-refuse-{field}"
    response = post(gateway, gateway.create_key(name), {"model": "fake-ok", "input": "hi", field: value})
    assert response.status_code == 400
    error = validate("ErrorResponse", response.json())["error"]
    assert error["param"] == field and f"'{field}'" in error["message"]
    assert gateway.usage(name)[0]["cost"] == 0


@pytest.mark.parametrize("body", [{"model": "fake-ok"}, {"model": "fake-ok", "input": 7},
                                  {"model": "fake-ok", "input": "x", "max_output_tokens": 0}])  # fmt: skip
def test_responses_bad_body_is_a_400_naming_the_field(gateway: Gateway, body: dict[str, Any]) -> None:
    response = post(gateway, gateway.create_key(f"resp-bad-{len(body)}-{body.get('input')}"), body)
    assert response.status_code == 400
    assert validate("ErrorResponse", response.json())["error"]["param"] in ("input", "max_output_tokens")


@pytest.mark.parametrize("stream", [False, True])
def test_responses_tool_round_trip_over_chat(gateway: Gateway, stream: bool) -> None:
    name = f"resp-tools-{stream}"
    client = gateway.client(gateway.create_key(name))
    first_input: list[Any] = [{"role": "user", "content": "use a tool: the weather in Paris?"}]
    if stream:
        events = list(client.responses.create(model="fake-tools", input=first_input, tools=[WEATHER], stream=True))
        check_sequence([e.model_dump(exclude_unset=True) for e in events])
        deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
        assert len(deltas) == 2 and "".join(deltas) == TOOL_ARGUMENTS
        first = events[-1].response
    else:
        first = client.responses.create(model="fake-tools", input=first_input, tools=[WEATHER])
    validate_responses("Response", first.model_dump(exclude_unset=True))
    [call] = first.output
    assert (call.type, call.name, call.arguments, call.call_id) == ("function_call", "get_weather", TOOL_ARGUMENTS,
                                                                    "call_round")  # fmt: skip
    second_input = [*first_input, call.model_dump(exclude_unset=True),
                    {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}]  # fmt: skip
    second = client.responses.create(model="fake-tools", input=second_input, tools=[WEATHER], stream=stream)
    final = [e for e in second if e.type == "response.completed"][0].response if stream else second
    assert final.output_text == TOOL_DONE + "sunny, 21C"
    messages = gateway.fake.requests_for("fake-tools")[-1].body["messages"]
    assert messages[1:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_round", "type": "function", "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS}}]},
        {"role": "tool", "tool_call_id": "call_round", "content": "sunny, 21C"},
    ]  # fmt: skip
    billed(gateway, name, (12, 3, 0))


def test_responses_native_tool_call_streams_through(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key("resp-native-tool"))
    events = list(client.responses.create(model="fake-resp-tool", input="weather?", tools=[WEATHER], stream=True))
    check_sequence([e.model_dump(exclude_unset=True) for e in events])
    assert events[-1].response.output[0].arguments == TOOL_ARGUMENTS
    billed(gateway, "resp-native-tool", (12, 3, 8))
