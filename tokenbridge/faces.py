"""Faces: how errors look to the caller of each route.

OpenAI's shape (`{"error": {...}}`, errors.py) is every route's unless the route is listed in
FACES: a route whose callers expect another API's error shape (say, Anthropic's on /v1/messages)
adds a row. Intake renders every error through the face of the call's route.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

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


OPENAI = Face(body=_body, stream_error=sse_error_event)

FACES: Mapping[str, Face] = MappingProxyType({})


def face_of(route: str) -> Face:
    return FACES.get(route, OPENAI)
