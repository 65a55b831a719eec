"""Errors in Anthropic's face (faces.py): the shape, the statuses Anthropic uses, low credit as a 400."""

from __future__ import annotations

import orjson
import pytest

from tokenbridge.errors import (
    GatewayError,
    InvalidApiKey,
    InvalidRequest,
    NoAvailableChannel,
    QuotaExceeded,
    RateLimited,
    RequestTooLarge,
    UpstreamError,
    UpstreamTimeout,
    unknown_model,
)
from tokenbridge.faces import ANTHROPIC, anthropic_passed, face_of


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error"),
        (InvalidApiKey("who?"), 401, "authentication_error"),
        (unknown_model("x"), 404, "not_found_error"),
        (RequestTooLarge("big"), 413, "request_too_large"),
        (RateLimited("slow", retry_after_s=2, kind="requests"), 429, "rate_limit_error"),
        (UpstreamError("down"), 500, "api_error"),
        (NoAvailableChannel("m", retry_in_s=3), 529, "overloaded_error"),
        (UpstreamTimeout("late"), 504, "timeout_error"),
        (QuotaExceeded("top it up"), 400, "invalid_request_error"),
    ],
)
def test_each_error_has_anthropic_s_type_and_status(error: GatewayError, status: int, kind: str) -> None:
    face = face_of("messages")
    assert face is ANTHROPIC is face_of("count_tokens")
    body = orjson.loads(face.body(error))
    assert face.status(error) == status
    assert body["type"] == "error" and body["error"]["type"] == kind and error.message in body["error"]["message"]


def test_low_credit_reads_as_anthropic_s_so_clients_do_not_retry() -> None:
    body = orjson.loads(ANTHROPIC.body(QuotaExceeded("This key's balance cannot cover this request.")))
    assert body["error"]["message"].startswith("Your credit balance is too low")


def test_a_broken_stream_ends_with_an_error_event() -> None:
    event = ANTHROPIC.stream_error(UpstreamError("cut"))
    assert event.startswith(b"event: error\ndata: ") and event.endswith(b"\n\n")
    assert orjson.loads(event.split(b"data: ", 1)[1]) == {
        "type": "error",
        "error": {"type": "api_error", "message": "cut"},
    }


def test_an_upstream_refusal_keeps_anthropic_s_own_type_and_else_gets_the_status_s() -> None:
    rebuilt = orjson.dumps({"error": {"message": "no", "type": "not_found_error", "param": None, "code": None}})
    assert anthropic_passed(404, rebuilt) == (
        404,
        b'{"type":"error","error":{"type":"not_found_error","message":"no"}}',
    )
    openai = orjson.dumps({"error": {"message": "bad field", "type": "invalid_request_error", "param": "x"}})
    assert orjson.loads(anthropic_passed(422, openai)[1])["error"] == {
        "type": "invalid_request_error",
        "message": "bad field",
    }
    assert anthropic_passed(422, openai)[0] == 400
    status, body = anthropic_passed(409, b"not json")
    assert status == 400 and orjson.loads(body)["error"]["message"] == "The upstream answered 409."
