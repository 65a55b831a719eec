"""The echo channel's `/embeddings` answer: deterministic vectors, so the first run can try embeddings offline.

Each input's vector comes from a hash of it (blake2b in counter mode, one 32-bit value per
dimension, scaled to [-1, 1) and normalised to length 1, as OpenAI's are): the same text always
gets the same vector, another text another one. `dimensions` is honoured (default
DEFAULT_DIMENSIONS). The values are float32, as OpenAI's: `encoding_format = "base64"` sends their
little-endian bytes, `float` the same numbers as JSON, so both decode to equal vectors.
"""

from __future__ import annotations

import array
import base64
import math
import struct
import sys
from collections.abc import Callable
from hashlib import blake2b
from typing import Any

import orjson

from tokenbridge.embeddings import inputs

DEFAULT_DIMENSIONS = 8
# The most values (inputs × dimensions) one echo answer computes: about 5 MB of JSON. A demo channel
# answers a larger request with a 400 rather than spend the process's memory on it.
MAX_VALUES = 1 << 18
_PER_DIGEST = 16  # 32-bit values in one 64-byte blake2b digest
_WORDS = struct.Struct(f"<{_PER_DIGEST}I")  # read little-endian: the same vectors on every machine


def vector(item: str | list[int], dimensions: int) -> array.array[float]:
    """The unit float32 vector of one input, from a hash of its text (or of its token ids)."""
    data = item.encode() if isinstance(item, str) else b"ids:" + orjson.dumps(item)
    seed = blake2b(data, digest_size=64).digest()
    words: list[int] = []
    for block in range(-(-dimensions // _PER_DIGEST)):
        words += _WORDS.unpack(blake2b(block.to_bytes(4, "little"), key=seed, digest_size=64).digest())
    values = [w / 2**31 - 1 for w in words[:dimensions]]
    norm = math.sqrt(math.fsum(v * v for v in values)) or 1.0
    return array.array("f", (v / norm for v in values))


def encoded(values: array.array[float], encoding_format: str) -> list[float] | str:
    """As OpenAI sends an embedding: a list of numbers, or base64 of the little-endian float32 bytes."""
    if encoding_format != "base64":
        return values.tolist()
    if sys.byteorder == "big":
        values = array.array("f", values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def embeddings_answer(request: dict[str, Any], *, count: Callable[[str], int]) -> tuple[int, bytes]:
    """(status, JSON body) of the echo's answer; `count` gives a string's tokens as the echo counts them."""
    items = inputs(request.get("input"))  # the gateway checked the body: this cannot raise for its requests
    dimensions = request.get("dimensions") or DEFAULT_DIMENSIONS
    if len(items) * dimensions > MAX_VALUES:
        message = f"The echo channel computes at most {MAX_VALUES} values per request (inputs × dimensions)."
        error = {"message": message, "type": "invalid_request_error", "param": "dimensions", "code": None}
        return 400, orjson.dumps({"error": error})
    encoding_format = request.get("encoding_format") or "float"
    data = [
        {"object": "embedding", "index": i, "embedding": encoded(vector(item, dimensions), encoding_format)}
        for i, item in enumerate(items)
    ]
    tokens = sum(len(item) if isinstance(item, list) else count(item) for item in items)
    answer = {
        "object": "list",
        "data": data,
        "model": str(request.get("model", "echo")),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return 200, orjson.dumps(answer)
