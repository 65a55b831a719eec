"""Upstream 4xx bodies as the caller sees them: OpenAI's four fields, rebuilt, with every secret masked."""

from __future__ import annotations

import orjson
import pytest

from tokenbridge.upstream.redact import caller_error_body, mask_secrets

SECRET = "channel-secret-without-a-known-shape-123"


def rebuilt(raw: bytes, status: int = 400) -> dict[str, object]:
    error = orjson.loads(caller_error_body(raw, status=status, secret=SECRET))["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


def test_redact_keeps_an_openai_error_as_it_was() -> None:
    error = {"message": "messages: too long", "type": "invalid_request_error", "param": "messages", "code": "x"}
    assert rebuilt(orjson.dumps({"error": error, "extra": SECRET})) == error


@pytest.mark.parametrize(
    "echoed",
    [
        SECRET,
        f"Bearer {SECRET}",
        "sk-proj-abcdefgh12345678",
        "sk-ant-api03-abcdefghijkl",
        "AIzaSyA1234567890abcdefghijklmnop",
    ],
)
def test_redact_masks_the_channel_secret_and_anything_shaped_like_a_key(echoed: str) -> None:
    body = {"error": {"message": f"bad key {echoed} here", "type": f"t {echoed}", "param": echoed, "code": echoed}}
    error = rebuilt(orjson.dumps(body))
    assert error["message"].startswith("bad key ***")  # type: ignore[union-attr]
    for value in error.values():
        assert SECRET not in str(value) and echoed not in str(value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<html>403 Forbidden</html>", "The provider refused the request (HTTP 404)."),
        (b'{"error": "plain string"}', "plain string"),
        (b'{"error": {"message": 7, "code": 42}}', "The provider refused the request (HTTP 404)."),
        (b"", "The provider refused the request (HTTP 404)."),
    ],
)
def test_redact_rebuilds_what_is_not_openai_shaped(raw: bytes, message: str) -> None:
    error = rebuilt(raw, status=404)
    assert error["message"] == message and error["type"] == "invalid_request_error"


def test_redact_numeric_code_becomes_a_string() -> None:
    assert rebuilt(b'{"error": {"message": "m", "code": 42}}')["code"] == "42"


def test_redact_mask_secrets_leaves_ordinary_text_alone() -> None:
    assert (
        mask_secrets("the model 'gpt-4o' needs a shorter prompt", SECRET) == "the model 'gpt-4o' needs a shorter prompt"
    )
