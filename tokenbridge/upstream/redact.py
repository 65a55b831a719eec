"""What of an upstream's refusal reaches the caller: OpenAI's four error fields, rebuilt, with secrets masked.

An upstream may echo the request's `Authorization` in its error message (some do, on a 400 or a
401), and that header carries the channel's own `api_key`. So no upstream error body is passed on
verbatim: the message, type, param and code are taken from it (a useful "messages: too long"
stays), the channel's secret and anything shaped like a provider key are masked, and the body is
written anew. A body that is not OpenAI-shaped gets a plain message naming the channel.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from tokenbridge.errors import UpstreamError

MASK = "***"
# Bearer tokens, and the key shapes of the providers people put behind a gateway (OpenAI-style sk-/rk-/pk-,
# Anthropic sk-ant-, Google AIza...): a key the channel was never told about is still nobody's business.
_KEY_LIKE = re.compile(r"(?i)\bbearer\s+[^\s\"',;]+|\b(?:sk|rk|pk)-[A-Za-z0-9_\-]{8,}|\bAIza[0-9A-Za-z_\-]{20,}")


def mask_secrets(text: str, secret: str) -> str:
    """`text` without the channel's `secret` or anything that looks like a key."""
    if secret:
        text = text.replace(secret, MASK)
    return _KEY_LIKE.sub(MASK, text)


def caller_error_body(raw: bytes, *, status: int, secret: str) -> bytes:
    """An upstream's 4xx body as the caller gets it: `{"error": {message, type, param, code}}`, masked."""
    try:
        payload: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, str):  # {"error": "..."}: a shape some compatible servers use
        error = {"message": error}
    if not isinstance(error, dict):
        error = {}

    def field(name: str) -> str | None:
        value = error.get(name)
        if name == "code" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # some servers send a numeric code
        return mask_secrets(value, secret) if isinstance(value, str) and value else None

    message = (
        field("message") or f"The provider refused the request (HTTP {status})."
    )  # no channel name (report.hide_channels)
    rebuilt = {"message": message, "type": field("type") or "invalid_request_error", "param": field("param"),
               "code": field("code")}  # fmt: skip
    return orjson.dumps({"error": rebuilt})


def stream_failure(payload: Any, secret: str) -> UpstreamError:
    """An upstream's error event in a stream being translated, as the error that ends the caller's
    stream in the route's own shape: its message kept for the caller, with the channel's secret (and
    anything shaped like a key) masked."""
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    said = mask_secrets(message, secret) if isinstance(message, str) and message else "no reason given"
    return UpstreamError(f"The upstream failed mid-stream: {said}")
