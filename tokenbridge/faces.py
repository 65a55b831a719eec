"""Faces: how errors look to the caller of each route.

OpenAI's shape (`{"error": {...}}`, errors.py) is every route's unless the route is listed in
FACES: a route whose callers expect another API's error shape (say, Anthropic's on /v1/messages)
adds a row. Intake renders every error through the face of the call's route.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import orjson

from tokenbridge.errors import GatewayError, sse_error_event


def _status(error: GatewayError) -> int:
    return error.status


def _body(error: GatewayError) -> bytes:
    return error.body()  # a subclass may shape its own (RateLimited names the limit)


@dataclass(frozen=True, slots=True)
class Face:
    body: Callable[[GatewayError], bytes]  # a JSON error answer's body
    stream_error: Callable[[GatewayError], bytes]  # the last SSE event of a stream that broke after it started
    status: Callable[[GatewayError], int] = _status  # the HTTP status of a JSON error answer
    # For a stream whose events are numbered (`sequence_number`): its last event, given the next number.
    # Intake reads the numbers off the bytes the caller got, so the error follows whatever went out.
    numbered_stream_error: Callable[[GatewayError, int], bytes] | None = None


OPENAI = Face(body=_body, stream_error=sse_error_event)
_SEQUENCE = b'"sequence_number":'


def responses_stream_error(error: GatewayError, sequence_number: int = 0) -> bytes:
    """The Responses API's `error` event (no `response.completed` follows it)."""
    event = {"type": "error", "code": error.code or error.type, "message": error.message, "param": error.param,
             "sequence_number": sequence_number}  # fmt: skip
    return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"


def next_sequence_number(data: bytes, current: int) -> int:
    """The number after the last `sequence_number` in `data` (a whole event's worth at least), else `current`."""
    at = data.rfind(_SEQUENCE)
    if at < 0:
        return current
    digits = data[at + len(_SEQUENCE) : at + len(_SEQUENCE) + 24].lstrip()
    end = 0
    while end < len(digits) and digits[end : end + 1].isdigit():
        end += 1
    return int(digits[:end]) + 1 if end else current


RESPONSES = Face(
    body=_body, stream_error=responses_stream_error, numbered_stream_error=responses_stream_error
)  # the JSON errors are OpenAI's, as the Responses API sends them

FACES: Mapping[str, Face] = MappingProxyType({"responses": RESPONSES})


def face_of(route: str) -> Face:
    return FACES.get(route, OPENAI)
