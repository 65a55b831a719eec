"""Faces: how errors look to the caller of each route.

OpenAI's shape (`{"error": {...}}`, errors.py) is every route's unless the route is listed in
FACES: a route whose callers expect another API's error shape (say, Anthropic's on /v1/messages)
adds a row. Intake renders every error through the face of the call's route.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

from tokenbridge.errors import GatewayError, QuotaExceeded, sse_error_event


def _status(error: GatewayError) -> int:
    return error.status


def _body(error: GatewayError) -> bytes:
    return error.body()  # a subclass may shape its own (RateLimited names the limit)


@dataclass(frozen=True, slots=True)
class Face:
    body: Callable[[GatewayError], bytes]  # a JSON error answer's body
    stream_error: Callable[[GatewayError], bytes]  # the last SSE event of a stream that broke after it started
    status: Callable[[GatewayError], int] = _status  # the HTTP status of a JSON error answer
    # An upstream's 4xx answer, passed on (the proxy rebuilt it OpenAI-shaped, redact.py), in this face:
    # (status, body) -> (status, body). None: passed on as it is.
    passed: Callable[[int, bytes], tuple[int, bytes]] | None = None
    # For a stream whose events are numbered (`sequence_number`): its last event, given the next number.
    # Intake reads the numbers off the bytes the caller got, so the error follows whatever went out.
    numbered_stream_error: Callable[[GatewayError, int], bytes] | None = None


OPENAI = Face(body=_body, stream_error=sse_error_event)
_SEQUENCE = b'"sequence_number":'

# Anthropic's error types by HTTP status, and the statuses it uses (docs.anthropic.com, "Errors"):
# a status Anthropic never sends is shown as the nearest one it does.
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                   504: "timeout_error", 529: "overloaded_error"}  # fmt: skip
ANTHROPIC_STATUSES = {502: 500, 503: 529}
LOW_CREDIT = "Your credit balance is too low to access this model."


def anthropic_status(status: int) -> int:
    status = ANTHROPIC_STATUSES.get(status, status)
    return status if status in ANTHROPIC_TYPES else (400 if status < 500 else 500)


def _anthropic(error: GatewayError) -> tuple[int, dict[str, Any]]:
    if isinstance(error, QuotaExceeded):  # as Anthropic answers low credit: a 400, so clients do not retry
        return 400, {"type": "invalid_request_error", "message": f"{LOW_CREDIT} {error.message}"}
    status = anthropic_status(error.status)
    return status, {"type": ANTHROPIC_TYPES[status], "message": error.message}


def anthropic_body(error: GatewayError) -> bytes:
    return orjson.dumps({"type": "error", "error": _anthropic(error)[1]})


def anthropic_stream_error(error: GatewayError) -> bytes:
    return b"event: error\ndata: " + anthropic_body(error) + b"\n\n"


def anthropic_passed(status: int, body: bytes) -> tuple[int, bytes]:
    """An upstream's rebuilt error `{"error": {"message", "type", ...}}` in Anthropic's shape, its type kept
    where it is one of Anthropic's (an Anthropic channel's own), else the status's."""
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    error = error if isinstance(error, dict) else {}
    shown = anthropic_status(status)
    kind = error.get("type") if error.get("type") in ANTHROPIC_TYPES.values() else ANTHROPIC_TYPES[shown]
    message = error.get("message") if isinstance(error.get("message"), str) else f"The upstream answered {status}."
    return shown, orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


ANTHROPIC = Face(
    body=anthropic_body,
    stream_error=anthropic_stream_error,
    status=lambda error: _anthropic(error)[0],
    passed=anthropic_passed,
)


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

FACES: Mapping[str, Face] = MappingProxyType({"messages": ANTHROPIC, "count_tokens": ANTHROPIC, "responses": RESPONSES})


def face_of(route: str) -> Face:
    return FACES.get(route, OPENAI)
