"""POST /v1/embeddings: the request's shape, as pure functions (SPEC §11).

The body stage refuses what OpenAI's `CreateEmbeddingRequest` does not allow, naming the field, so
no channel is asked to embed what it would refuse after the hold was taken: `input` is a string, an
array of strings, an array of token ids, or an array of arrays of token ids, never empty and at
most MAX_INPUTS items; `encoding_format` is `float` or `base64`; `dimensions` a positive integer. An
embedding answer is never streamed. The rest of the request (its bytes) goes upstream as checked.

`inputs` is what the estimate (tokens.py) and the echo channel read: one item per embedding asked for.

An embeddings answer is the JSON answer that outgrows MAX_JSON_BYTES in plain use (a batch of 2048
vectors of 1536 floats is some 60 MB), so the meter cannot read it whole; OpenAI's ends with its
`usage`, which `usage_at_end` finds in the answer's last TAIL_BYTES, so such a batch is billed by
the upstream's count too, not estimated.
"""

from __future__ import annotations

from typing import Any

import orjson

from tokenbridge.errors import InvalidRequest

MAX_INPUTS = 2048  # OpenAI's limit for an array `input`
ENCODING_FORMATS = ("float", "base64")
TAIL_BYTES = 4096  # the end of an answer too large to read whole, kept to find its usage in
_INPUT_SHAPE = (
    "'input' must be a non-empty string, or a non-empty array of strings, of token ids, or of arrays of token ids"
)


def _token_ids(value: Any) -> bool:
    """A non-empty array of token ids (non-negative integers; a boolean is no integer)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)
    )


def inputs(value: Any) -> list[str | list[int]]:
    """The items to embed, one per embedding: each a string or an array of token ids.
    Raises InvalidRequest (param `input`) for anything else."""
    if isinstance(value, str) and value:
        return [value]
    if _token_ids(value):
        return [value]
    if isinstance(value, list) and value and len(value) <= MAX_INPUTS:
        if all(isinstance(item, str) and item for item in value) or all(_token_ids(item) for item in value):
            return list(value)
    if isinstance(value, list) and len(value) > MAX_INPUTS:
        raise InvalidRequest(f"'input' holds {len(value)} items; at most {MAX_INPUTS} per request.", param="input")
    raise InvalidRequest(_INPUT_SHAPE + ".", param="input")


def check_embedding_request(body: dict[str, Any]) -> None:
    """Raise InvalidRequest naming the field that OpenAI's embeddings endpoint would refuse."""
    inputs(body.get("input"))
    encoding_format = body.get("encoding_format")
    if encoding_format is not None and encoding_format not in ENCODING_FORMATS:
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        raise InvalidRequest("'dimensions' must be a positive integer.", param="dimensions")
    if body.get("stream") not in (None, False):
        raise InvalidRequest(
            "'stream' is not supported on /v1/embeddings: its answer is never streamed.", param="stream"
        )


def usage_at_end(tail: bytes) -> dict[str, Any] | None:
    """`{"usage": {...}, ...}` from the last bytes of a JSON object whose members end with `usage` (and any
    after it), as OpenAI's embeddings answers do; None when the tail holds no such member."""
    at = tail.rfind(b'"usage"')
    end = tail.rstrip()
    if at < 0 or not end.endswith(b"}"):
        return None
    try:
        members = orjson.loads(b"{" + end[at:-1] + b"}")
    except orjson.JSONDecodeError:
        return None
    return members if isinstance(members, dict) else None
