"""The shape stage's SSE translation: event for event, whatever the byte boundaries."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes import anthropic as fake
from tests.stages.kit import (
    Inner,
    chat_body,
    json_messages,
    make_call,
    meter_stage,
    run_stage,
    shape_stage,
    write_settings,
)
from tokenbridge.adapters import Stateless
from tokenbridge.call import Call
from tokenbridge.completions import translate_event
from tokenbridge.errors import UpstreamError
from tokenbridge.money import Usage
from tokenbridge.settings import Settings
from tokenbridge.stages.shape import SseTranslator
from tokenbridge.upstream.sse import EventSplitter, event_data


def chat_stream(pieces: list[str], *, usage: bool, crlf: bool) -> bytes:
    end = b"\r\n\r\n" if crlf else b"\n\n"

    def event(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> bytes:
        chunk = {"id": "chatcmpl-p", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices}
        return b"data: " + orjson.dumps({**chunk, **(extra or {})}) + end

    out = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    out += [event([{"index": 0, "delta": {"content": p}, "finish_reason": None}]) for p in pieces]
    out.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if usage:
        out.append(event([], {"usage": {"prompt_tokens": 3, "completion_tokens": len(pieces), "total_tokens": 9}}))
    out.append(b"data: [DONE]" + end)
    return b"".join(out)


def translate_in(chunks: list[bytes]) -> bytes:
    translator = SseTranslator(Stateless(translate_event))
    out = [translator.feed(chunk) for chunk in chunks]
    assert all(failure is None for _, failure in out)
    return b"".join(data for data, _ in out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.text(min_size=1, max_size=8), max_size=6),
    usage=st.booleans(),
    crlf=st.booleans(),
    cuts=st.lists(st.integers(min_value=0), max_size=40),
)
def test_shape_sse_any_split_translates_to_the_same_events(
    pieces: list[str], usage: bool, crlf: bool, cuts: list[int]
) -> None:
    stream = chat_stream(pieces, usage=usage, crlf=crlf)
    whole = translate_in([stream])
    assert translate_in(split(stream, cuts)) == whole
    bytewise = translate_in([stream[i : i + 1] for i in range(len(stream))])
    assert bytewise == whole
    splitter = EventSplitter()
    events = [event_data(e) for e in splitter.feed(whole)]
    assert splitter.tail == b"" and events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "".join(pieces)
    assert all(c["object"] == "text_completion" and c["id"] == "cmpl-p" for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert ("usage" in chunks[-1]) is usage


# --- chat over an anthropic channel: shape translates, the meter inside reads the Messages wire -------------------

CLAUDE_CHANNEL = (
    '[[channels]]\nname = "claude"\nkind = "anthropic"\nbase_url = "http://127.0.0.1:9/v1"\nmodels = ["m"]\n'
)


def claude_call(tmp_path: Any, **body: Any) -> tuple[Settings, Call]:
    settings = write_settings(tmp_path, channels=CLAUDE_CHANNEL)
    call = make_call(settings, body=chat_body(**body), candidates=settings.channels)
    return settings, call


def as_proxy(call: Call) -> None:
    """What the proxy writes once it picked the channel (upstream/proxy.py)."""
    call.channel, call.wire = call.candidates[0], "messages"
    call.upstream_body = call.upstream_bodies["messages"]


async def entered(call: Call) -> None:
    as_proxy(call)


def sse_in_one_message(events: list[bytes]) -> list[Any]:
    head = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
    return [head, {"type": "http.response.body", "body": b"".join(events), "more_body": True}]


def caller_chunks(body: bytes) -> list[Any]:
    return [orjson.loads(event_data(e)) for e in EventSplitter().feed(body) if event_data(e) != b"[DONE]"]


async def test_shape_stage_answers_a_chat_stream_from_messages_events_billed_by_the_messages_dialect(
    tmp_path: Any,
) -> None:
    _, call = claude_call(tmp_path, stream=True)
    events = fake.stream_events("claude-cached", [{"type": "text", "pieces": fake.PIECES}], "end_turn", None)
    inner = Inner(
        *sse_in_one_message(events), {"type": "http.response.body", "body": b"", "more_body": False}, on_enter=entered
    )
    result = await run_stage(shape_stage(meter_stage(inner)), call)
    assert result.error is None and result.body.endswith(b"data: [DONE]\n\n")
    chunks = caller_chunks(result.body)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == fake.TEXT
    assert "stream_options" not in call.upstream_body and call.upstream_body["max_tokens"] > 0
    assert call.usage == Usage(14, 3, 6, 3) and call.complete


async def test_shape_stage_sends_what_came_before_anthropics_error_event_then_fails(tmp_path: Any) -> None:
    _, call = claude_call(tmp_path, stream=True)
    events = fake.stream_events("claude-ok", [{"type": "text", "pieces": fake.PIECES}], "end_turn", None)
    broken = [*events[: fake.FIRST_DELTA + 1], fake.event("error", fake.error_body("overloaded_error", "Overloaded"))]
    result = await run_stage(shape_stage(meter_stage(Inner(*sse_in_one_message(broken), on_enter=entered))), call)
    assert isinstance(result.error, UpstreamError) and "Overloaded" in result.error.message
    chunks = caller_chunks(result.body)
    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": ""}, {"content": "Hello"}]
    assert b"[DONE]" not in result.body and call.end_reason == "upstream_error" and not call.complete


async def test_shape_stage_answers_chat_json_from_a_messages_answer(tmp_path: Any) -> None:
    _, call = claude_call(tmp_path)
    message = fake.message_json("claude-ok", [{"type": "text", "pieces": fake.PIECES}], "end_turn", None)
    result = await run_stage(shape_stage(meter_stage(Inner(*json_messages(message), on_enter=entered))), call)
    [head] = [m for m in result.messages if m["type"] == "http.response.start"]
    answer = orjson.loads(result.body)
    assert dict(head["headers"])[b"content-length"] == str(len(result.body)).encode()
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"] == fake.TEXT
    assert call.usage == Usage(12, 3) and call.usage_source == "upstream"
