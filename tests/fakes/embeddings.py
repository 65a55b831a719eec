"""The fake upstream's `/v1/embeddings` (tests/fakes/upstream.py routes it here), switched by model name.

| model        | behaviour                                                                         |
| ------------ | --------------------------------------------------------------------------------- |
| (any other)  | one vector of DIMENSIONS (or `dimensions`) per input, float or base64 as asked;   |
|              | usage: `embedding_tokens(input)` prompt tokens                                    |
| fake-nousage | as above, without usage                                                           |
| fake-hold    | as above, once `release()` lets it (upstream.py's hold)                           |
| fake-500     | 500                                                                               |

Each request is checked against OpenAI's `CreateEmbeddingRequest` first (a 422 if it is not one),
so a test sees that what the gateway forwards is a request OpenAI would take.
"""

from __future__ import annotations

import array
import base64
from typing import Any

from jsonschema import ValidationError

from tests.schemas import validate

DIMENSIONS = 6


def embedding_tokens(value: Any) -> int:
    """The fake's own count: a word per whitespace-separated piece of each string, a token per id."""
    items = [value] if isinstance(value, str) or (value and isinstance(value[0], int)) else value
    return sum(len(item) if isinstance(item, list) else len(item.split()) for item in items)


def fake_vector(index: int, dimensions: int) -> list[float]:
    """Values a float32 holds exactly, so JSON and base64 carry the very same numbers."""
    return [(index + 1) / 4 + d / 8 for d in range(dimensions)]


def embeddings_answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(status, JSON payload) for one `/v1/embeddings` request."""
    try:
        validate("CreateEmbeddingRequest", body)
    except ValidationError as exc:
        return 422, {"error": {"message": f"not a CreateEmbeddingRequest: {exc.message}", "type": "fake"}}
    model = body["model"]
    if model == "fake-500":
        return 500, {"error": {"message": "fake is down", "type": "server_error"}}
    value = body["input"]
    count = 1 if isinstance(value, str) or isinstance(value[0], int) else len(value)
    dimensions = body.get("dimensions") or DIMENSIONS
    data = []
    for i in range(count):
        values: Any = fake_vector(i, dimensions)
        if body.get("encoding_format") == "base64":
            values = base64.b64encode(array.array("f", values).tobytes()).decode()
        data.append({"object": "embedding", "index": i, "embedding": values})
    answer: dict[str, Any] = {"object": "list", "data": data, "model": model}
    if model != "fake-nousage":
        tokens = embedding_tokens(value)
        answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return 200, answer
