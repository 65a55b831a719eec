"""The native Responses wire's dialect (stages/responses_tap.py), alone and under the meter."""

from __future__ import annotations

from typing import Any

import pytest

from tests.echo_config import echo_settings
from tests.fakes.responses import PIECES, RESPONSE_USAGE, TEXT, native_answer, native_events, sse
from tests.stages.kit import Inner, json_messages, make_call, meter_stage, run_stage, sse_messages
from tokenbridge.errors import UpstreamError
from tokenbridge.money import Usage
from tokenbridge.stages.responses_tap import ResponsesTap, answer_texts, usage_from

BODY = {"model": "m", "input": "Say hello", "stream": True}


def test_the_tap_passes_whole_events_through_as_the_same_bytes_and_reads_the_end_event() -> None:
    tap = ResponsesTap()
    for event in native_events("x"):
        data = sse(event)
        assert tap.feed(data) is data
    assert tap.done and tap.usage == Usage(12, 3, 8) and tap.finish() == b""
    assert "".join(tap.texts()) == TEXT  # the deltas only: the *.done events and the end event repeat them


@pytest.mark.parametrize("end", ["response.completed", "response.incomplete", "response.failed"])
def test_each_end_event_ends_the_stream_with_its_usage(end: str) -> None:
    tap = ResponsesTap()
    tap.feed(sse({"type": end, "sequence_number": 3, "response": {"usage": RESPONSE_USAGE}}))
    assert tap.done and tap.usage == Usage(12, 3, 8)


def test_a_stream_split_anywhere_comes_out_whole_and_a_cut_one_is_not_done() -> None:
    data = b"".join(sse(e) for e in native_events("x")[:6])
    tap = ResponsesTap()
    out = b"".join(tap.feed(data[i : i + 7]) for i in range(0, len(data), 7))
    assert out == data and not tap.done and tap.usage is None
    assert "".join(tap.texts()) == "".join(PIECES[:2])


def test_an_event_no_client_can_read_ends_the_stream_before_it() -> None:
    tap = ResponsesTap()
    first = sse(native_events("x")[0])
    assert tap.feed(first + b"event: x\ndata: not json\n\n" + first) == first
    assert tap.fault is not None and tap.fault.startswith("event: x")


@pytest.mark.parametrize(
    "usage",
    [None, {"input_tokens": -1, "output_tokens": 3}, {"input_tokens": 2, "output_tokens": 3,
                                                      "input_tokens_details": {"cached_tokens": 5}},
     {"input_tokens": True, "output_tokens": 3}, {"output_tokens": 3}],
)  # fmt: skip
def test_usage_that_is_missing_or_impossible_is_none(usage: Any) -> None:
    assert usage_from({"usage": usage}) is None


def test_a_json_answer_gives_its_usage_and_its_text() -> None:
    assert usage_from(native_answer("x")) == Usage(12, 3, 8)
    assert answer_texts(native_answer("x")) == [TEXT]
    assert answer_texts(native_answer("fake-resp-tool")) == ["get_weather", '{"city": "Paris"}']


async def test_the_meter_reads_a_native_stream_in_its_own_dialect() -> None:
    call = make_call(echo_settings(), body=BODY, route="responses", wire="responses")
    result = await run_stage(meter_stage(Inner(*sse_messages(*(sse(e) for e in native_events("x"))))), call)
    assert result.error is None and call.complete
    assert (call.usage, call.usage_source) == (Usage(12, 3, 8), "upstream")


async def test_the_meter_ends_a_native_stream_without_its_end_event_as_broken_and_estimates_it() -> None:
    call = make_call(echo_settings(), body=BODY, route="responses", wire="responses")
    result = await run_stage(meter_stage(Inner(*sse_messages(*(sse(e) for e in native_events("x")[:5])))), call)
    assert isinstance(result.error, UpstreamError) and "response.completed" in result.error.message
    assert call.usage_source == "estimated" and call.end_reason == "upstream_error"
    assert call.usage is not None and call.usage.completion_tokens == 1  # "Hello"


async def test_the_meter_reads_a_native_json_answer() -> None:
    call = make_call(echo_settings(), body={**BODY, "stream": False}, route="responses", wire="responses")
    await run_stage(meter_stage(Inner(*json_messages(native_answer("x")))), call)
    assert (call.usage, call.usage_source, call.complete) == (Usage(12, 3, 8), "upstream", True)
