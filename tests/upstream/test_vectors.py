"""The echo channel's embeddings (upstream/vectors.py): deterministic unit vectors, float or base64, bounded."""

from __future__ import annotations

import array
import base64
import math
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.schemas import validate
from tokenbridge.upstream.vectors import DEFAULT_DIMENSIONS, MAX_VALUES, embeddings_answer, encoded, vector


def answer(**request: Any) -> tuple[int, Any]:
    status, body = embeddings_answer({"model": "echo-embed", **request}, count=lambda text: len(text.split()))
    return status, orjson.loads(body)


@given(st.text(min_size=1), st.integers(1, 64))
def test_vector_is_deterministic_unit_length_float32_of_the_size_asked(text: str, dimensions: int) -> None:
    values = vector(text, dimensions)
    assert values.typecode == "f" and len(values) == dimensions
    assert math.isclose(math.fsum(v * v for v in values), 1.0, rel_tol=1e-5)
    assert vector(text, dimensions) == values


def test_vector_differs_between_texts_and_between_a_text_and_token_ids() -> None:
    assert vector("a cat", 8) != vector("a dog", 8)
    assert vector("[1,2]", 8) != vector([1, 2], 8)


def test_base64_is_the_little_endian_float32_bytes_of_the_same_numbers() -> None:
    values = vector("hello", 5)
    text = encoded(values, "base64")
    assert isinstance(text, str)
    assert array.array("f", base64.b64decode(text)).tolist() == encoded(values, "float") == values.tolist()


@pytest.mark.parametrize("encoding_format", [None, "float", "base64"])
def test_answer_has_openais_shape_and_the_echos_usage(encoding_format: str | None) -> None:
    request: dict[str, Any] = {"input": ["one two", "three"]}
    if encoding_format:
        request["encoding_format"] = encoding_format
    status, body = answer(**request)
    assert status == 200 and body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    for item in body["data"]:
        if encoding_format == "base64":
            item["embedding"] = array.array("f", base64.b64decode(item["embedding"])).tolist()
        assert len(item["embedding"]) == DEFAULT_DIMENSIONS
    validate("CreateEmbeddingResponse", body)
    assert [e["index"] for e in body["data"]] == [0, 1]


def test_answer_counts_token_ids_by_their_length() -> None:
    status, body = answer(input=[[5, 6, 7], [8]], dimensions=2)
    assert status == 200 and body["usage"]["prompt_tokens"] == 4 and len(body["data"][1]["embedding"]) == 2


def test_answer_past_the_echos_bound_is_a_400_naming_dimensions() -> None:
    status, body = answer(input="x", dimensions=MAX_VALUES + 1)
    assert status == 400 and body["error"]["param"] == "dimensions"
    assert answer(input="x", dimensions=MAX_VALUES)[0] == 200
