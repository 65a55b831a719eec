"""The meter's pure parts (stages/meter.py): reading usage, and tapping SSE and JSON answers without changing them."""

from __future__ import annotations

import json
import threading
import tracemalloc
from dataclasses import dataclass
from typing import Any, cast

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenbridge.call import Call
from tokenbridge.limits import MAX_JSON_BYTES
from tokenbridge.money import Usage
from tokenbridge.stages.chat_tap import UNREAD_TEXT_EVENT_BYTES, JsonTap, SseTap, answer_texts, usage_from
from tokenbridge.stages.meter import MeterMiddleware
from tokenbridge.upstream.sse import MAX_EVENT_BYTES

USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


def sse(payload: Any, *, eol: bytes = b"\n") -> bytes:
    return b"data: " + orjson.dumps(payload) + eol + eol


def content_chunk(text: str, **extra: Any) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}], **extra}


def usage_chunk(usage: dict[str, Any]) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [], "usage": usage}


DONE = b"data: [DONE]\n\n"


# --- usage_from ---------------------------------------------------------------------------------------------------


def test_usage_from_reads_prompt_and_completion_tokens() -> None:
    assert usage_from({"usage": USAGE}) == Usage(prompt_tokens=12, completion_tokens=3, cached_tokens=0)


def test_usage_from_reads_cached_tokens_from_prompt_tokens_details() -> None:
    usage = {**USAGE, "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 0}}
    assert usage_from({"usage": usage}) == Usage(prompt_tokens=12, completion_tokens=3, cached_tokens=8)


def test_usage_from_all_prompt_tokens_cached() -> None:
    usage = {**USAGE, "prompt_tokens_details": {"cached_tokens": 12}}
    assert usage_from({"usage": usage}) == Usage(prompt_tokens=12, completion_tokens=3, cached_tokens=12)


@pytest.mark.parametrize("details", [None, {}, {"cached_tokens": None}, [8]])
def test_usage_from_zero_cached_tokens_when_details_missing(details: Any) -> None:
    assert usage_from({"usage": {**USAGE, "prompt_tokens_details": details}}) == Usage(12, 3, 0)


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "usage",
        {},
        {"usage": None},
        {"usage": []},
        {"usage": {}},
        {"usage": {"prompt_tokens": 12}},
        {"usage": {"completion_tokens": 3}},
        {"usage": {"prompt_tokens": "12", "completion_tokens": 3}},
        {"usage": {"prompt_tokens": 12, "completion_tokens": 3.0}},
        {"usage": {"prompt_tokens": None, "completion_tokens": None}},
        {"usage": {"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": "8"}}},
    ],
)
def test_usage_from_none_when_usage_absent_null_or_malformed(payload: Any) -> None:
    assert usage_from(payload) is None


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -5, "completion_tokens": 3},
        {"prompt_tokens": 12, "completion_tokens": -3},
        {"prompt_tokens": 0, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 1000}},
        {"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": -1}},
        {"prompt_tokens": True, "completion_tokens": False},
    ],
)
def test_usage_from_none_when_counts_impossible(usage: dict[str, Any]) -> None:
    # Priced, such counts make a negative cost, and settling a negative cost raises the balance.
    assert usage_from({"usage": usage}) is None


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 10**9 + 1, "completion_tokens": 3},
        {"prompt_tokens": 12, "completion_tokens": 10**9 + 1},
        {"prompt_tokens": 2**63, "completion_tokens": 3},  # past a SQLite INTEGER: the settle could not be written
        {"prompt_tokens": 9 * 10**18, "completion_tokens": 9 * 10**18},  # two such rows overflow SUM()
    ],
)
def test_usage_from_none_when_counts_are_past_any_one_request(usage: dict[str, Any]) -> None:
    assert usage_from({"usage": usage}) is None


def test_usage_from_takes_counts_up_to_the_bound() -> None:
    usage = {"prompt_tokens": 10**9, "completion_tokens": 10**9, "prompt_tokens_details": {"cached_tokens": 10**9}}
    assert usage_from({"usage": usage}) == Usage(10**9, 10**9, 10**9)


def test_usage_from_an_answer_without_output_reads_its_prompt_tokens_alone() -> None:
    embedding = {"usage": {"prompt_tokens": 7, "total_tokens": 7}}  # OpenAI's embeddings usage
    assert usage_from(embedding) is None  # on a route with output, that is no usage: estimated instead
    assert usage_from(embedding, output=False) == Usage(7, 0, 0)
    assert usage_from({"usage": {"prompt_tokens": 7, "completion_tokens": 2}}, output=False) == Usage(7, 2, 0)
    for bad in ({"prompt_tokens": -7}, {"prompt_tokens": 7, "completion_tokens": "0"}, {"total_tokens": 7}):
        assert usage_from({"usage": bad}, output=False) is None


# --- SseTap -------------------------------------------------------------------------------------------------------


def test_sse_tap_strip_cuts_only_the_usage_only_chunk() -> None:
    first, second, cut = sse(content_chunk("Hel")), sse(content_chunk("lo")), sse(usage_chunk(USAGE))
    tap = SseTap(strip=True)

    out = tap.feed(first + second + cut + DONE)

    assert out == first + second + DONE
    assert tap.usage == Usage(12, 3, 0)
    assert tap.done


@pytest.mark.parametrize(
    ("event", "stripped"),
    [
        (
            b'data: {"choices":[{"delta":{"content":"a"}}],"usage":null}\n\n',
            b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n',
        ),
        (b'data: {"choices": [], "usage": null, "id": "x"}\r\n\r\n', b'data: {"choices": [], "id": "x"}\r\n\r\n'),
    ],
)
def test_sse_tap_strip_cuts_added_null_usage_from_chunks(event: bytes, stripped: bytes) -> None:
    # The gateway asked for usage on the caller's behalf, so the "usage":null it put in every chunk goes too.
    tap = SseTap(strip=True)
    assert tap.feed(event) == stripped
    assert tap.usage is None


def test_sse_tap_strip_keeps_null_usage_text_inside_strings() -> None:
    event = sse(content_chunk(',"usage":null'))  # in JSON text the quotes are escaped: nothing to cut
    assert SseTap(strip=True).feed(event) is event


def test_sse_tap_pass_through_keeps_null_usage_in_chunks() -> None:
    event = sse(content_chunk("a", usage=None))
    assert b',"usage":null' in event
    assert SseTap(strip=False).feed(event) is event


def test_sse_tap_strip_keeps_usage_chunk_that_still_has_choices() -> None:
    # Some upstreams put usage on the last content chunk: that chunk carries text, so it must go out.
    event = sse(content_chunk("!", usage=USAGE))
    tap = SseTap(strip=True)
    assert tap.feed(event) is event
    assert tap.usage == Usage(12, 3, 0)


def test_sse_tap_pass_through_keeps_usage_chunk_and_records_it() -> None:
    stream = sse(content_chunk("Hi", usage=None)) + sse(usage_chunk(USAGE)) + DONE
    tap = SseTap(strip=False)
    assert tap.feed(stream) is stream
    assert tap.usage == Usage(12, 3, 0)
    assert tap.done


def test_sse_tap_returns_same_bytes_object_when_fed_whole_events() -> None:
    tap = SseTap(strip=False)
    for chunk in [sse(content_chunk("a", usage=None)), sse(content_chunk("b"), eol=b"\r\n"), b": ping\n\n", DONE]:
        assert tap.feed(chunk) is chunk


def test_sse_tap_strip_returns_same_bytes_object_when_nothing_is_cut() -> None:
    chunk = sse(content_chunk("a")) + sse(content_chunk("b")) + DONE
    assert SseTap(strip=True).feed(chunk) is chunk


def test_sse_tap_releases_split_event_only_when_complete() -> None:
    event = sse(content_chunk("Hello"))
    tap = SseTap(strip=False)

    assert tap.feed(event[:10]) == b""
    assert tap.feed(event[10:-1]) == b""
    assert tap.feed(event[-1:] + event[:5]) == event
    assert tap.feed(event[5:]) == event


def test_sse_tap_strip_cuts_usage_chunk_split_across_feeds() -> None:
    before, cut = sse(content_chunk("x")), sse(usage_chunk(USAGE))
    tap = SseTap(strip=True)
    assert tap.feed(before + cut[:20]) == before
    assert tap.feed(cut[20:] + DONE) == DONE
    assert tap.usage == Usage(12, 3, 0)


def parsed_by_orjson(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every document orjson.loads reads from now on, in order."""
    parsed: list[bytes] = []
    real_loads = orjson.loads

    def loads(data: bytes) -> Any:
        parsed.append(data)
        return real_loads(data)

    monkeypatch.setattr(orjson, "loads", loads)
    return parsed


@pytest.mark.parametrize("strip", [True, False])
def test_sse_tap_does_not_parse_usage_null_chunks(monkeypatch: pytest.MonkeyPatch, strip: bool) -> None:
    parsed = parsed_by_orjson(monkeypatch)
    tap = SseTap(strip=strip)

    for text in ("a", "b", "c"):
        tap.feed(sse(content_chunk(text, usage=None)))
    assert parsed == []
    assert tap.usage is None

    tap.feed(sse(usage_chunk(USAGE)))
    assert len(parsed) == 1
    assert tap.usage == Usage(12, 3, 0)


def test_sse_tap_takes_no_usage_from_malformed_json_and_stops_there() -> None:
    event = b'data: {"choices": [], "usage": {\n\n'
    tap = SseTap(strip=True)
    assert tap.feed(event) == b""  # no client could read it: the stream ends before it (see below)
    assert tap.usage is None
    assert tap.fault is not None


def test_sse_tap_sets_done_on_done_event() -> None:
    tap = SseTap(strip=False)
    tap.feed(sse(content_chunk("a")))
    assert not tap.done
    tap.feed(b"data: [DONE]\r\n\r\n")
    assert tap.done


def test_sse_tap_not_done_when_done_text_is_only_inside_content() -> None:
    tap = SseTap(strip=False)
    tap.feed(sse(content_chunk("[DONE]")))
    assert tap.finish() == b""
    assert not tap.done


def test_sse_tap_finish_accepts_and_terminates_done_without_blank_line() -> None:
    tap = SseTap(strip=False)
    assert tap.feed(sse(content_chunk("a")) + b"data: [DONE]") == sse(content_chunk("a"))
    assert not tap.done
    assert tap.finish() == b"data: [DONE]\n\n"  # terminated, so strict SSE parsers dispatch it
    assert tap.done
    assert tap.splitter.tail == b""


def test_sse_tap_finish_returns_unfinished_event_without_done() -> None:
    tap = SseTap(strip=False)
    tap.feed(b'data: {"choices": [')
    assert tap.finish() == b'data: {"choices": ['
    assert not tap.done


def test_sse_tap_passes_on_oversized_unfinished_event() -> None:
    tap = SseTap(strip=False)
    big = b"data: " + b"x" * MAX_EVENT_BYTES
    assert tap.feed(big[:100]) == b""
    assert tap.feed(big[100:]) == big
    assert tap.splitter.tail == b""


def test_sse_tap_strip_cuts_usage_chunk_when_oversized_tail_follows_in_same_feed() -> None:
    # The no-copy shortcut must not hand back the uncut input when a cut and an overflow meet in one feed.
    cut = sse(usage_chunk(USAGE))
    big = b"data: " + b"x" * MAX_EVENT_BYTES
    tap = SseTap(strip=True)
    out = tap.feed(cut + big)
    assert tap.usage == Usage(12, 3, 0)
    assert out == big


def test_sse_tap_texts_are_the_delivered_answer_text() -> None:
    tap = SseTap(strip=True)
    tap.feed(sse(content_chunk("Hel", usage=None)) + sse({"choices": [{"delta": {"role": "assistant"}}]}))
    tap.feed(sse(content_chunk("lo", usage=None)) + sse(usage_chunk(USAGE)) + DONE)
    assert tap.texts() == ["Hel", "lo"]


def test_sse_tap_texts_not_recorded_for_event_still_held() -> None:
    tap = SseTap(strip=False)
    event = sse(content_chunk("later"))
    tap.feed(sse(content_chunk("now")) + event[:-1])
    assert tap.texts() == ["now"]


def test_sse_tap_running_usage_totals_keep_the_latest(caplog: pytest.LogCaptureFixture) -> None:
    # Some servers report a running total in every chunk (vLLM's continuous_usage_stats).
    tap = SseTap(strip=False)
    tap.feed(sse(content_chunk("a", usage={"prompt_tokens": 12, "completion_tokens": 1})))
    tap.feed(sse(content_chunk("b", usage={"prompt_tokens": 12, "completion_tokens": 2})))
    tap.feed(sse(usage_chunk(USAGE)) + sse(usage_chunk(USAGE)) + DONE)
    assert tap.usage == Usage(12, 3, 0)
    assert not caplog.records


@pytest.mark.parametrize(
    ("first", "second", "billed"),
    [
        (USAGE, {"prompt_tokens": 1, "completion_tokens": 1}, Usage(12, 3)),
        (USAGE, {"prompt_tokens": 0, "completion_tokens": 0}, Usage(12, 3)),
        ({"prompt_tokens": 20, "completion_tokens": 1}, USAGE, Usage(20, 1)),
        (USAGE, {"prompt_tokens": 20, "completion_tokens": 1}, Usage(20, 1)),
        ({"prompt_tokens": 14, "completion_tokens": 1}, USAGE, Usage(12, 3)),  # as many tokens: more output
        (USAGE, {"prompt_tokens": 14, "completion_tokens": 1}, Usage(12, 3)),
    ],
)
def test_sse_tap_conflicting_usage_reports_bill_the_larger_and_are_logged(
    caplog: pytest.LogCaptureFixture, first: dict[str, int], second: dict[str, int], billed: Usage
) -> None:
    # Counts never go down within one answer, so one of two such reports is wrong; the upstream bills
    # by its own count, so the larger is kept (never just the last, which an upstream's bug could zero).
    tap = SseTap(strip=True, request_id="req_two")
    tap.feed(sse(content_chunk("Hi")) + sse(usage_chunk(first)) + sse(usage_chunk(second)) + DONE)
    assert tap.usage == billed
    [record] = [r for r in caplog.records if r.name == "tokenbridge"]
    assert record.levelname == "WARNING" and "req_two" in record.getMessage()


def _long_stream(text_per_event: str, total_bytes: int) -> tuple[list[bytes], int]:
    """Content events in reads of 64 KiB, as a fast upstream sends them, and the number of events."""
    event = sse(content_chunk(text_per_event, usage=None))
    per_read = (64 << 10) // len(event)
    count = total_bytes // len(event) // per_read * per_read
    return [event * per_read] * (count // per_read), count


def test_sse_tap_keeps_a_bounded_amount_of_a_long_stream() -> None:
    # 12 MB of answer: what a stream keeps for an estimate must not grow with it (20 callers leaving
    # such streams took the gateway's RSS to 394 MB). Memory, not time: traced allocations still held.
    reads, _ = _long_stream("y" * 100, 12 << 20)
    tap = SseTap(strip=False)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for data in reads:
            tap.feed(data)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 3 << 20  # UNREAD_TEXT_EVENT_BYTES of events, MAX_DELIVERED_TEXT_BYTES of text, and their lists


def test_sse_tap_keeps_a_bounded_amount_when_fed_large_reads() -> None:
    read = sse(content_chunk("word ", usage=None)) * 20_000  # ~2 MB in one read
    tap = SseTap(strip=False)
    for _ in range(3):
        tap.feed(read)
        assert tap.unread_bytes <= UNREAD_TEXT_EVENT_BYTES


def test_sse_tap_texts_are_the_whole_text_of_a_long_cut_stream() -> None:
    reads, count = _long_stream("word ", 1 << 20)
    tap = SseTap(strip=True)
    for data in reads:
        tap.feed(data)
    tap.feed(sse(content_chunk("cut")))
    assert "".join(tap.texts()) == "word " * count + "cut"


def test_sse_tap_short_stream_is_not_read_as_it_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nearly every stream brings its usage: reading its events for their text would be work for nothing.
    reads, count = _long_stream("word ", UNREAD_TEXT_EVENT_BYTES - (64 << 10))
    parsed = parsed_by_orjson(monkeypatch)
    tap = SseTap(strip=False)
    for data in reads:
        tap.feed(data)
    assert parsed == []
    assert "".join(tap.texts()) == "word " * count


async def test_meter_reads_the_delivered_text_for_an_estimate_off_the_event_loop() -> None:
    # Reading up to UNREAD_TEXT_EVENT_BYTES of events is CPU work: on the loop it stalls every request.
    threads: list[threading.Thread] = []

    def texts() -> list[str]:
        threads.append(threading.current_thread())
        return ["Hello", " there"]

    call = Call(request_id="req_estimate", settings=cast(Any, None), status=200, model="gpt-4o-mini")
    call.body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    await MeterMiddleware._account(call, None, texts)
    assert threads and threads[0] is not threading.current_thread()
    assert call.usage_source == "estimated" and call.usage is not None and call.usage.completion_tokens == 2


@pytest.mark.parametrize(
    ("payload", "texts"),
    [
        ({"choices": [{"message": {"role": "assistant", "content": "Hi"}}]}, ["Hi"]),
        ({"choices": [{"delta": {"content": "a"}}, {"delta": {"content": "b"}}]}, ["a", "b"]),
        ({"choices": [{"text": "native"}]}, ["native"]),
        ({"choices": [{"delta": {"role": "assistant"}}, "junk", {"delta": {"content": None}}]}, []),
        ({"choices": None}, []),
        ([], []),
    ],
)
def test_answer_texts_from_completion_chunk_or_text_completion(payload: Any, texts: list[str]) -> None:
    assert answer_texts(payload) == texts


def tool_call_delta(index: int, **function: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": index, "function": function}]}}]}


def test_answer_texts_of_a_tool_call_answer_are_its_names_and_arguments() -> None:
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    message = {"role": "assistant", "content": None, "tool_calls": calls}
    assert answer_texts({"choices": [{"message": message}]}) == ["get_weather", '{"city":"Paris"}', "get_time", "{}"]
    legacy = {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}}
    assert answer_texts({"choices": [{"message": legacy}]}) == ["f", "{}"]
    assert answer_texts(tool_call_delta(0, arguments='{"ci')) == ['{"ci']


def test_sse_tap_texts_keep_tool_call_argument_deltas() -> None:
    tap = SseTap(strip=False)
    tap.feed(sse(tool_call_delta(0, name="get_weather", arguments="")))
    tap.feed(sse(tool_call_delta(0, arguments='{"city":')) + sse(tool_call_delta(0, arguments='"Paris"}')) + DONE)
    assert "".join(tap.texts()) == 'get_weather{"city":"Paris"}'


# A chat stream as an upstream writes it when the gateway asked for usage: content chunks with a null usage
# (orjson's ',"usage":null' or json.dumps' ', "usage": null'), the usage-only chunk, then [DONE]. Each event
# picks its own line-ending style, the bare CR included.
_EOL = st.sampled_from([b"\n", b"\r\n", b"\r"])
# Content may say anything, '"usage"' and '[DONE]' included: JSON escaping keeps it from looking like either.
_TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from([',"usage":null', '"usage":{"prompt_tokens":1}', "[DONE]", "data: [DONE]\n\n"]),
)
_COUNT = st.integers(0, 10**7)


@dataclass(frozen=True)
class _ChatStream:
    sent: bytes  # the content events as the upstream sent them
    stripped: bytes  # the same events without their null usage: what a caller that did not ask gets
    cut: bytes  # the usage-only event
    done: bytes
    usage: Usage
    chunks: list[bytes]  # the whole stream, split anywhere


def _dumps(payload: dict[str, Any], spaced: bool) -> bytes:
    return json.dumps(payload).encode() if spaced else orjson.dumps(payload)


@st.composite
def _chat_streams(draw: st.DrawFn) -> _ChatStream:
    sent, stripped = b"", b""
    for text in draw(st.lists(_TEXT, max_size=5)):
        eol, spaced = draw(_EOL), draw(st.booleans())
        sent += b"data: " + _dumps(content_chunk(text, usage=None), spaced) + eol * 2
        stripped += b"data: " + _dumps(content_chunk(text), spaced) + eol * 2
    prompt, completion = draw(_COUNT), draw(_COUNT)
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    cached = draw(st.integers(0, prompt))
    if draw(st.booleans()):
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    else:
        cached = 0
    cut = b"data: " + _dumps(usage_chunk(usage), draw(st.booleans())) + draw(_EOL) * 2
    done = b"data: [DONE]" + draw(_EOL) * 2
    stream = sent + cut + done
    bounds = [0, *sorted(draw(st.sets(st.integers(0, len(stream))))), len(stream)]
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:])]
    return _ChatStream(sent, stripped, cut, done, Usage(prompt, completion, cached), chunks)


@settings(max_examples=200, deadline=None)
@given(_chat_streams())
def test_sse_tap_strip_output_is_input_less_usage_event_and_null_usage_for_any_split(stream: _ChatStream) -> None:
    tap = SseTap(strip=True)

    out = b"".join(tap.feed(chunk) for chunk in stream.chunks) + tap.finish()

    assert out == stream.stripped + stream.done
    assert tap.usage == stream.usage
    assert tap.done


@settings(max_examples=100, deadline=None)
@given(_chat_streams())
def test_sse_tap_pass_through_output_is_input_for_any_split(stream: _ChatStream) -> None:
    tap = SseTap(strip=False)

    out = b"".join(tap.feed(chunk) for chunk in stream.chunks) + tap.finish()

    assert out == stream.sent + stream.cut + stream.done
    assert tap.usage == stream.usage
    assert tap.done


# --- JsonTap ------------------------------------------------------------------------------------------------------


def test_json_tap_reads_usage_at_end_from_chunks() -> None:
    body = orjson.dumps({"object": "chat.completion", "choices": [], "usage": USAGE})
    tap = JsonTap()
    chunks = [body[:7], body[7:30], body[30:]]
    for chunk in chunks:
        assert tap.feed(chunk) is chunk
    assert tap.usage() == Usage(12, 3, 0)


def test_json_tap_none_when_body_is_not_json() -> None:
    tap = JsonTap()
    tap.feed(b"<html>Bad Gateway</html>")
    assert tap.usage() is None


def test_json_tap_none_when_body_has_no_usage() -> None:
    tap = JsonTap()
    tap.feed(b'{"error": {"message": "nope"}}')
    assert tap.usage() is None


def test_json_tap_reads_usage_at_exactly_max_json_bytes() -> None:
    head = orjson.dumps({"usage": USAGE})[:-1] + b', "pad": "'
    body = head + b"x" * (MAX_JSON_BYTES - len(head) - 2) + b'"}'
    assert len(body) == MAX_JSON_BYTES
    tap = JsonTap()
    tap.feed(body)
    assert tap.usage() == Usage(12, 3, 0)


def test_json_tap_none_when_over_max_json_bytes() -> None:
    head = orjson.dumps({"usage": USAGE})[:-1] + b', "pad": "'
    body = head + b"x" * (MAX_JSON_BYTES - len(head) - 1) + b'"}'
    assert len(body) == MAX_JSON_BYTES + 1
    assert orjson.loads(body)["usage"] == USAGE  # it would parse; only the size keeps it unread
    tap = JsonTap()
    for i in range(0, len(body), 1 << 20):
        chunk = body[i : i + (1 << 20)]
        assert tap.feed(chunk) is chunk
    assert tap.usage() is None


def test_json_tap_over_max_json_bytes_reads_the_usage_that_ends_it() -> None:
    # An embeddings batch outgrows the bound; OpenAI puts its usage last, where the tap still finds it.
    vectors = [{"object": "embedding", "index": i, "embedding": "AAAAAA==" * 1000} for i in range(1200)]
    body = orjson.dumps(
        {"object": "list", "data": vectors, "model": "m", "usage": {"prompt_tokens": 7, "total_tokens": 7}}
    )
    assert len(body) > MAX_JSON_BYTES
    tap = JsonTap()
    for i in range(0, len(body), 1 << 16):
        tap.feed(body[i : i + (1 << 16)])
    assert usage_from(tap.payload(), output=False) == Usage(7, 0, 0)
    assert len(tap.tail) <= 4096


def test_json_tap_complete_once_content_length_bytes_are_in() -> None:
    body = orjson.dumps({"usage": USAGE})
    tap = JsonTap(expected=len(body))
    tap.feed(body[:-1])
    assert not tap.complete()
    tap.feed(body[-1:])
    assert tap.complete()


def test_json_tap_never_complete_without_content_length() -> None:
    tap = JsonTap()
    tap.feed(orjson.dumps({"usage": USAGE}))
    assert not tap.complete()


@pytest.mark.parametrize(
    ("events", "passed", "fault"),
    [
        ([b'data: {"a":1}\n\n', b": keep-alive\n\n", b"data: [DONE]\n\n"], 3, False),
        ([b'data: {"a":\ndata: 1}\r\n\r\n', b"event: x\r\r"], 2, False),  # multi-line data, no data at all
        ([b'data: {"a":1}\n\n', b"data: <html>\n\n", b'data: {"b":2}\n\n'], 1, True),
        ([b'data: {"a":1\n\n'], 0, True),  # cut JSON
        ([b"data: [1, 2]\n\n"], 0, True),  # JSON, but not an object
    ],
)
def test_sse_tap_stops_at_an_event_no_client_can_read(events: list[bytes], passed: int, fault: bool) -> None:
    tap = SseTap(strip=False)
    out = tap.feed(b"".join(events))
    assert out == b"".join(events[:passed])
    assert (tap.fault is not None) is fault
