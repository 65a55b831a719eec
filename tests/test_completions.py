"""Legacy completions <-> chat, as pure functions."""

from __future__ import annotations

import orjson
import pytest

from tokenbridge.completions import (
    chat_request,
    completion_chunk,
    completion_response,
    prompt_text,
    translate_event,
)
from tokenbridge.errors import InvalidRequest

CARRIED = {
    "max_tokens": 5, "max_completion_tokens": 4, "temperature": 0.2, "top_p": 0.9, "n": 2, "stop": ["\n"],
    "presence_penalty": 0.1,
    "frequency_penalty": 0.3, "logit_bias": {"50256": -100}, "seed": 7, "user": "u1", "stream": True,
    "stream_options": {"include_usage": True},
}  # fmt: skip


def test_chat_request_carries_the_fields_chat_honours() -> None:
    chat = chat_request({"model": "m", "prompt": "hi", **CARRIED, "echo": False, "best_of": 1, "suffix": None})
    assert chat == {"model": "m", **CARRIED, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("field", "value"), [("echo", True), ("suffix", "x"), ("best_of", 2), ("logprobs", 0)])
def test_chat_request_refuses_what_chat_cannot_honour(field: str, value: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        chat_request({"model": "m", "prompt": "hi", field: value})
    assert info.value.param == field


@pytest.mark.parametrize(("prompt", "text"), [("a b", "a b"), (["only"], "only"), ("", "")])
def test_prompt_text_takes_one_string(prompt: object, text: str) -> None:
    assert prompt_text(prompt) == text


@pytest.mark.parametrize("prompt", [["a", "b"], [[1, 2]], [1, 2], None, {"x": 1}])
def test_prompt_text_refuses_several_or_token_prompts(prompt: object) -> None:
    with pytest.raises(InvalidRequest, match="prompt"):
        prompt_text(prompt)


def test_completion_response_maps_each_choice_and_keeps_usage() -> None:
    chat = {
        "id": "chatcmpl-abc", "object": "chat.completion", "created": 5, "model": "m", "system_fingerprint": "fp",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "one"}, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": None}, "finish_reason": "length"},
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }  # fmt: skip
    assert completion_response(chat) == {
        "id": "cmpl-abc", "object": "text_completion", "created": 5, "model": "m", "system_fingerprint": "fp",
        "choices": [
            {"text": "one", "index": 0, "logprobs": None, "finish_reason": "stop"},
            {"text": "", "index": 1, "logprobs": None, "finish_reason": "length"},
        ],
        "usage": chat["usage"],
    }  # fmt: skip


def test_completion_chunk_drops_role_only_and_empty_chunks() -> None:
    base = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    role = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    empty = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": None}], "usage": None}
    assert completion_chunk(role) is None and completion_chunk(empty) is None
    usage_only = {**base, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    assert completion_chunk(usage_only) == {
        "id": "cmpl-x", "object": "text_completion", "created": 1, "model": "m", "choices": [],
        "usage": usage_only["usage"],
    }  # fmt: skip


def test_translate_event_passes_done_errors_and_foreign_events_unchanged() -> None:
    for event in (b"data: [DONE]\n\n", b'data: {"error": {"message": "x"}}\n\n', b": keep-alive\n\n"):
        assert translate_event(event) == event
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}  # fmt: skip
    out = orjson.loads(translate_event(b"data: " + orjson.dumps(chunk) + b"\n\n")[6:])
    assert out["choices"] == [{"text": "hi", "index": 0, "logprobs": None, "finish_reason": None}]


def test_translate_event_takes_chat_chunks_without_an_object_field() -> None:
    chunk = {"id": "chatcmpl-2", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "yo"}, "finish_reason": None}]}  # fmt: skip
    out = orjson.loads(translate_event(b"data: " + orjson.dumps(chunk) + b"\n\n")[6:])
    assert out["object"] == "text_completion" and out["choices"][0]["text"] == "yo"


@pytest.mark.parametrize(
    "choices",
    [
        ["junk", {"index": 0, "delta": "oops"}, {"index": 1, "delta": ["x"]}, None, 7],
        [{"index": 0, "delta": {"content": 5}}, {"index": 0, "delta": {"content": {"text": "x"}}}],
        "not a list",
        {"index": 0, "delta": {"content": "x"}},
    ],
)
def test_completion_chunk_skips_what_is_not_a_choice_with_a_delta(choices: object) -> None:
    # An upstream's malformed chunk says nothing the caller can use: dropped, never a crash (it was a 500).
    chunk = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices}
    assert completion_chunk(chunk) is None
    assert translate_event(b"data: " + orjson.dumps(chunk) + b"\n\n") == b""


def test_completion_chunk_keeps_the_good_choices_and_finish_reasons_beside_malformed_ones() -> None:
    good = {"index": 1, "delta": {"content": "ok"}, "finish_reason": None}
    ended = {"index": 2, "delta": "oops", "finish_reason": "stop"}
    chunk = {"object": "chat.completion.chunk", "choices": ["junk", {"index": 0, "delta": "oops"}, good, ended]}
    translated = completion_chunk(chunk)
    assert translated is not None
    assert translated["choices"] == [
        {"text": "ok", "index": 1, "logprobs": None, "finish_reason": None},
        {"text": "", "index": 2, "logprobs": None, "finish_reason": "stop"},
    ]
