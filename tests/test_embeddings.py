"""The embeddings request's shape (embeddings.py): what `input` may be, and each refusal naming its field."""

from __future__ import annotations

from typing import Any

import pytest

from tokenbridge.embeddings import MAX_INPUTS, check_embedding_request, inputs, usage_at_end
from tokenbridge.errors import InvalidRequest
from tokenbridge.tokens import encoding, input_tokens


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("one", ["one"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]]),
        ([[1, 2], [3]], [[1, 2], [3]]),
        (["x"] * MAX_INPUTS, ["x"] * MAX_INPUTS),
    ],
)
def test_inputs_are_one_item_per_embedding(value: Any, items: list[Any]) -> None:
    assert inputs(value) == items


@pytest.mark.parametrize(
    "value",
    [None, "", [], [""], [[]], ["a", [1]], [1, "a"], [[1], 2], [-1], [1.0], [True], [[False]], {"a": 1}, 7],
)
def test_inputs_refuses_what_openai_refuses(value: Any) -> None:
    with pytest.raises(InvalidRequest) as caught:
        inputs(value)
    assert caught.value.param == "input"


def test_inputs_refuses_more_than_openais_limit_saying_so() -> None:
    with pytest.raises(InvalidRequest, match=f"2049 items; at most {MAX_INPUTS}"):
        inputs([[1]] * (MAX_INPUTS + 1))


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"encoding_format": "int8"}, "encoding_format"),
        ({"encoding_format": None, "dimensions": 0}, "dimensions"),
        ({"dimensions": 2.0}, "dimensions"),
        ({"stream": True}, "stream"),
        ({"stream": "no"}, "stream"),
    ],
)
def test_check_embedding_request_names_the_field(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_embedding_request({"model": "m", "input": "x", **extra})
    assert caught.value.param == param


def test_check_embedding_request_takes_openais_options() -> None:
    for extra in ({}, {"encoding_format": "float", "dimensions": 1, "stream": False, "user": "u"}):
        check_embedding_request({"model": "m", "input": "x", "encoding_format": "base64", **extra})


def test_input_tokens_counts_strings_offline_and_token_ids_as_they_are() -> None:
    cl100k = encoding("cl100k_base")  # tiktoken's encoding of text-embedding-3-*
    texts = ["The quick brown fox", "jumps over the lazy dog"]
    expected = sum(len(cl100k.encode(t)) for t in texts)
    assert input_tokens({"input": texts}, "text-embedding-3-small") == expected
    assert input_tokens({"input": [[1, 2, 3], [4]]}, "text-embedding-3-small") == 4
    assert input_tokens({"input": [9, 9]}, "text-embedding-3-small") == 2


@pytest.mark.parametrize(
    ("tail", "found"),
    [
        (b'0.25, 0.5]}], "model": "m", "usage": {"prompt_tokens": 8, "total_tokens": 8}}', {"prompt_tokens": 8}),
        (b'AAA="}],\n  "usage": {\n    "prompt_tokens": 8,\n    "total_tokens": 8\n  }\n}\n', {"prompt_tokens": 8}),
        (b'"usage": {"prompt_tokens": 8, "total_tokens": 8}, "model": "m"}', {"prompt_tokens": 8}),
    ],
)
def test_usage_at_end_reads_the_usage_member_that_ends_an_answer(tail: bytes, found: dict[str, int]) -> None:
    members = usage_at_end(tail)
    assert members is not None and members["usage"]["prompt_tokens"] == found["prompt_tokens"]


@pytest.mark.parametrize(
    "tail", [b"0.25, 0.5]}]}", b'"usage": {"prompt_tokens": 8', b'{"content": "usage"}', b'"usage": 1} trailing', b""]
)
def test_usage_at_end_none_without_a_whole_usage_member(tail: bytes) -> None:
    members = usage_at_end(tail)
    assert members is None or not isinstance(members.get("usage"), dict)
