"""The body stage (stages/body.py) as an ASGI app: the size limit, JSON, the shape, and the Call it fills."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.stages.kit import MODEL, Inner, body_stage, chat_body, make_call, run_stage, write_settings
from tokenbridge.call import Call
from tokenbridge.errors import ClientGone, InvalidRequest, RequestTooLarge
from tokenbridge.settings import Settings
from tokenbridge.stages.body import check_shape

LIMIT = 200


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return write_settings(tmp_path, max_body_bytes=LIMIT)


def blank(settings: Settings) -> Call:
    return make_call(settings)  # as intake leaves it: nothing read yet


async def test_body_fills_the_call_and_runs_the_inner_app_once(settings: Settings) -> None:
    body = chat_body(stream=True, max_tokens=5)
    inner = Inner()
    call = blank(settings)
    result = await run_stage(body_stage(inner), call, orjson.dumps(body))
    assert result.error is None and inner.calls == 1
    assert (call.route, call.body, call.model, call.stream) == ("chat", body, MODEL, True)
    assert orjson.loads(call.raw_body) == body


async def test_body_forwards_the_checked_body_not_the_callers_bytes(settings: Settings) -> None:
    # A doubled key reads last-wins: what goes upstream must be what was checked, with one "model".
    raw = b'{"model": "other", "model": "' + MODEL.encode() + b'", "messages": [{"role": "user", "content": "x"}]}'
    call = blank(settings)
    result = await run_stage(body_stage(Inner()), call, raw)
    assert result.error is None
    assert call.model == MODEL and call.raw_body.count(b'"model"') == 1 and b"other" not in call.raw_body


async def test_body_joins_a_body_sent_in_pieces(settings: Settings) -> None:
    raw = orjson.dumps(chat_body())
    call = blank(settings)
    result = await run_stage(body_stage(Inner()), call, chunks=[raw[:7], raw[7:20], raw[20:]])
    assert result.error is None and call.body == chat_body()


async def test_body_at_the_limit_is_taken(settings: Settings) -> None:
    raw = orjson.dumps(chat_body())
    raw = raw[:-1] + b" " * (LIMIT - len(raw)) + b"}"
    assert len(raw) == LIMIT
    result = await run_stage(body_stage(Inner()), blank(settings), raw)
    assert result.error is None


async def test_body_over_an_announced_length_is_refused_unread(settings: Settings) -> None:
    inner = Inner()
    headers = [(b"content-length", str(LIMIT + 1).encode())]
    result = await run_stage(body_stage(inner), blank(settings), b"x" * (LIMIT + 1), headers=headers)
    assert isinstance(result.error, RequestTooLarge) and result.status == 413
    assert result.received == 0 and inner.calls == 0  # refused on the header, before a byte was read
    assert str(LIMIT) in result.error_json()["message"]


async def test_body_over_the_limit_without_a_length_is_refused_as_it_grows(settings: Settings) -> None:
    inner = Inner()
    result = await run_stage(body_stage(inner), blank(settings), chunks=[b"{" * 150, b" " * 51, b"}" * 1000])
    assert isinstance(result.error, RequestTooLarge) and result.status == 413
    assert result.received == 2 and inner.calls == 0  # the third piece is never read


async def test_body_a_caller_that_leaves_mid_body_is_gone(settings: Settings) -> None:
    inner = Inner()
    result = await run_stage(body_stage(inner), blank(settings), chunks=[b'{"model":'], truncated=True, leave_after=0)
    assert isinstance(result.error, ClientGone) and inner.calls == 0


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"model": "m",}', b"\xff\xfe"])
async def test_body_that_is_not_json_is_a_400(settings: Settings, raw: bytes) -> None:
    inner = Inner()
    result = await run_stage(body_stage(inner), blank(settings), raw)
    assert isinstance(result.error, InvalidRequest) and result.status == 400
    assert "parse the JSON" in result.error_json()["message"] and inner.calls == 0


SHAPE_ERRORS: list[tuple[str, Any, str | None]] = [
    ("chat", [chat_body()], None),
    ("chat", "just a string", None),
    ("chat", {"messages": [{"role": "user", "content": "x"}]}, "model"),
    ("chat", chat_body(model=5), "model"),
    ("chat", chat_body(model=""), "model"),
    ("chat", {"model": MODEL}, "messages"),
    ("chat", chat_body(messages=[]), "messages"),
    ("chat", chat_body(messages={"role": "user"}), "messages"),
    ("chat", chat_body(messages=[{"role": "user", "content": "x"}, "hello"]), "messages[1]"),
    ("chat", chat_body(messages=[{"content": "no role"}]), "messages[0]"),
    ("chat", chat_body(stream="yes"), "stream"),
    ("chat", chat_body(max_tokens=0), "max_tokens"),
    ("chat", chat_body(max_completion_tokens=1.5), "max_completion_tokens"),
    ("chat", chat_body(n=True), "n"),
    ("chat", chat_body(stream_options=1), "stream_options"),
    ("completions", {"model": MODEL}, "prompt"),
    ("completions", {"model": MODEL, "prompt": []}, "prompt"),
    ("completions", {"model": MODEL, "prompt": 7}, "prompt"),
    ("embeddings", {"model": MODEL}, "input"),
    ("embeddings", {"model": MODEL, "input": ""}, "input"),
    ("embeddings", {"model": MODEL, "input": [[1], "x"]}, "input"),
    ("embeddings", {"model": MODEL, "input": [-1]}, "input"),
    ("embeddings", {"model": MODEL, "input": "x", "encoding_format": "float16"}, "encoding_format"),
    ("embeddings", {"model": MODEL, "input": "x", "dimensions": -3}, "dimensions"),
    ("embeddings", {"model": MODEL, "input": "x", "dimensions": True}, "dimensions"),
    ("embeddings", {"model": MODEL, "input": "x", "stream": True}, "stream"),
]


@pytest.mark.parametrize(("kind", "body", "param"), SHAPE_ERRORS)
async def test_body_of_the_wrong_shape_is_a_400_naming_the_param(
    settings: Settings, kind: str, body: Any, param: str | None
) -> None:
    inner = Inner()
    call = blank(settings)
    result = await run_stage(body_stage(inner, kind=kind), call, orjson.dumps(body))
    assert isinstance(result.error, InvalidRequest) and result.status == 400
    error = result.error_json()
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert param is None or param in error["message"]
    assert inner.calls == 0 and call.body == {} and call.raw_body == b""  # nothing half-filled


async def test_body_completions_route_takes_a_prompt(settings: Settings) -> None:
    body = {"model": MODEL, "prompt": "Say hi", "max_tokens": 3}
    call = blank(settings)
    result = await run_stage(body_stage(Inner(), kind="completions"), call, orjson.dumps(body))
    assert result.error is None and (call.route, call.body, call.stream) == ("completions", body, False)


@pytest.mark.parametrize("value", ["one text", ["a", "b"], [1, 2, 3], [[1, 2], [3]]])
async def test_body_embeddings_route_takes_each_input_shape(settings: Settings, value: Any) -> None:
    body = {"model": MODEL, "input": value, "encoding_format": "base64", "dimensions": 4}
    call = blank(settings)
    result = await run_stage(body_stage(Inner(), kind="embeddings"), call, orjson.dumps(body))
    assert result.error is None and (call.route, call.body, call.stream) == ("embeddings", body, False)


async def test_a_messages_body_needs_max_tokens_as_anthropic_does(settings: Settings) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    result = await run_stage(body_stage(Inner(), kind="messages"), blank(settings), orjson.dumps(body))
    assert isinstance(result.error, InvalidRequest) and result.error.param == "max_tokens"
    call = blank(settings)
    result = await run_stage(body_stage(Inner(), kind="messages"), call, orjson.dumps({**body, "max_tokens": 7}))
    assert result.error is None and (call.route, call.body["max_tokens"]) == ("messages", 7)


@pytest.mark.parametrize("system", [5, {"text": "x"}])
async def test_a_messages_body_with_a_system_that_is_no_text_is_refused(settings: Settings, system: Any) -> None:
    body = {"model": MODEL, "max_tokens": 5, "system": system, "messages": [{"role": "user", "content": "hi"}]}
    result = await run_stage(body_stage(Inner(), kind="messages"), blank(settings), orjson.dumps(body))
    assert isinstance(result.error, InvalidRequest) and result.error.param == "system"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": 3}, "input"),
        ({"input": ["not an item"]}, "input"),
        ({"input": "x", "instructions": ["a"]}, "instructions"),
        ({"input": "x", "tools": {}}, "tools"),
        ({"input": "x", "tool_choice": 1}, "tool_choice"),
        ({"input": "x", "text": "json"}, "text"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "x", "max_output_tokens": True}, "max_output_tokens"),
    ],
)
def test_a_responses_body_that_is_not_one_is_refused_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_shape("responses", {"model": MODEL, **body})
    assert info.value.param == param


def test_a_responses_body_with_a_string_or_items_passes() -> None:
    for value in ("hi", [{"role": "user", "content": "hi"}], []):
        assert check_shape("responses", {"model": MODEL, "input": value, "max_output_tokens": 5})["input"] == value
