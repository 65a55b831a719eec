"""The route/wire tables (adapters.py), the meter's dialects and the error faces: what each picks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from tests.schemas import validate_event
from tokenbridge.adapters import ADAPTERS, ROUTES, WIRES, adapter_for, upstream_bodies, wire_for
from tokenbridge.call import Call
from tokenbridge.errors import InvalidRequest, RateLimited, UpstreamError
from tokenbridge.faces import OPENAI, RESPONSES, face_of, next_sequence_number
from tokenbridge.stages.body import ROUTE_CHECKS
from tokenbridge.stages.dialects import CHAT, DIALECTS, dialect_of
from tokenbridge.upstream.sse import event_data

from .echo_config import echo_settings


def _call(route: str, body: dict[str, Any], *, native: int = 0, chat: int = 1, anthropic: int = 0) -> Call:
    settings = echo_settings()
    echo = settings.channels[0]
    http = replace(echo, name="up", kind="openai", base_url="http://127.0.0.1:9/v1", completions="native")
    claude = replace(echo, name="claude", kind="anthropic", base_url="http://127.0.0.1:9/v1")
    call = Call(request_id="r", settings=settings)
    call.route, call.body = route, body
    call.candidates = (http,) * native + (echo,) * chat + (claude,) * anthropic
    return call


def test_every_route_has_a_body_check_a_wire_choice_and_an_adapter() -> None:
    assert ROUTES == set(ROUTE_CHECKS) == set(WIRES)
    assert {route for route, _ in ADAPTERS} == ROUTES
    assert all(adapter.path.startswith("/") for adapter in ADAPTERS.values())


def test_a_completions_call_is_translated_once_for_its_chat_channels_and_passed_as_it_is_to_native_ones() -> None:
    body = {"model": "m", "prompt": "say hi", "max_tokens": 3}
    call = _call("completions", body, native=2, chat=2)
    bodies = upstream_bodies(call)
    assert set(bodies) == {"completions", "chat"}
    assert bodies["completions"] is body
    assert bodies["chat"]["messages"] == [{"role": "user", "content": "say hi"}]
    http, echo = call.candidates[0], call.candidates[-1]
    assert (wire_for("completions", http), adapter_for("completions", http).path) == ("completions", "/completions")
    assert (wire_for("completions", echo), adapter_for("completions", echo).path) == ("chat", "/chat/completions")


def test_a_field_one_wire_refuses_is_refused_even_if_a_native_channel_comes_first() -> None:
    call = _call("completions", {"model": "m", "prompt": "x", "echo": True}, native=1, chat=1)
    with pytest.raises(InvalidRequest) as info:
        upstream_bodies(call)
    assert info.value.param == "echo"


def test_a_route_whose_wires_all_take_its_body_translates_nothing() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert all(each is body for each in upstream_bodies(_call("chat", body, native=1, chat=1)).values())
    assert upstream_bodies(_call("completions", {"model": "m", "prompt": "x"}, native=1, chat=0)) == {
        "completions": {"model": "m", "prompt": "x"}
    }


def test_a_chat_call_on_an_anthropic_channel_goes_as_messages_with_the_default_limit() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    call = _call("chat", body, chat=1, anthropic=1)
    bodies = upstream_bodies(call)
    assert bodies["chat"] is body and body == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert bodies["messages"]["max_tokens"] == call.settings.server.default_max_tokens
    assert bodies["messages"]["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    claude = call.candidates[-1]
    adapter = adapter_for("chat", claude)
    assert (wire_for("chat", claude), adapter.path, adapter.ask_usage) == ("messages", "/messages", False)
    assert upstream_bodies(_call("chat", {**body, "max_tokens": 9}, anthropic=1))["messages"]["max_tokens"] == 9


def test_a_field_messages_refuses_is_refused_even_if_a_chat_channel_comes_first() -> None:
    call = _call("chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2}, chat=1, anthropic=1)
    with pytest.raises(InvalidRequest) as info:
        upstream_bodies(call)
    assert info.value.param == "n"


def test_the_meter_reads_unknown_wires_as_chat_and_the_chat_wires_have_the_chat_dialect() -> None:
    assert DIALECTS["chat"] is DIALECTS["completions"] is CHAT
    assert dialect_of("") is CHAT


def test_routes_without_a_face_of_their_own_show_openai_errors_with_each_error_own_body() -> None:
    assert face_of("chat") is OPENAI and face_of("") is OPENAI
    limited = RateLimited("slow down", retry_after_s=3, kind="tokens")
    assert face_of("chat").body(limited) == limited.body()
    assert b'"tokens"' in face_of("chat").body(limited)


def test_a_responses_call_goes_native_only_where_the_channel_and_its_kind_both_can() -> None:
    call = _call("responses", {"model": "m", "input": "hi"}, native=1, chat=1)
    http, echo = call.candidates
    native = replace(http, responses="native")
    assert (wire_for("responses", native), adapter_for("responses", native).path) == ("responses", "/responses")
    assert wire_for("responses", http) == "chat"  # the default
    assert wire_for("responses", replace(echo, responses="native")) == "chat"  # echo answers chat only
    call.candidates = (native, echo)
    bodies = upstream_bodies(call)
    assert bodies["responses"] is call.body and bodies["chat"]["messages"] == [{"role": "user", "content": "hi"}]


def test_the_responses_face_ends_a_broken_stream_with_a_numbered_error_event() -> None:
    face = face_of("responses")
    assert face is RESPONSES and face.numbered_stream_error is not None
    event = face.numbered_stream_error(UpstreamError("cut"), 7)
    assert event.startswith(b"event: error\ndata: ") and event.endswith(b"\n\n")
    error = validate_event(orjson.loads(event_data(event)))
    assert (error["code"], error["message"], error["sequence_number"]) == ("upstream_error", "cut", 7)
    assert face.body(UpstreamError("x")) == UpstreamError("x").body()  # JSON errors stay OpenAI's


@pytest.mark.parametrize(
    ("data", "current", "after"),
    [
        (b'data: {"type":"a","sequence_number":4}\n\ndata: {"type":"b","sequence_number":5}\n\n', 0, 6),
        (b'data: {"sequence_number": 12, "type":"a"}\n\n', 3, 13),
        (b": keep-alive\n\n", 3, 3),
    ],
)
def test_the_next_sequence_number_is_read_off_the_last_event_sent(data: bytes, current: int, after: int) -> None:
    assert next_sequence_number(data, current) == after
