"""Errors a caller can act on, OpenAI-shaped, rendered in one place.

    GatewayError                  status/type/code as class attributes
    ├── InvalidRequest            400 invalid_request_error
    ├── RequestTooLarge           413 request_too_large
    ├── RequestTimeout            408 request_timeout (a request head or body not whole in time)
    ├── RequestHeaderTooLarge     431 request_header_too_large
    ├── TooManyConnections        503 too_many_connections (over [server] max_connections)
    ├── InvalidApiKey             401 invalid_api_key
    ├── PermissionDenied          403 permission_denied (a key holder asking for what only the admin may)
    ├── ModelNotFound             404 model_not_found
    ├── UnknownKey                404 key_not_found (admin API)
    ├── DuplicateKey              409 key_exists (admin API)
    ├── BalanceOutOfRange         409 balance_out_of_range (admin API: a credit the balance cannot take)
    ├── RouteNotFound             404 not_found / 405 method_not_allowed
    ├── QuotaExceeded             429 insufficient_quota (x-should-retry: false)
    ├── RateLimited               429 rate_limit_exceeded (Retry-After)
    ├── BillingUnavailable        503 billing_unavailable (the answer's charge could not be written)
    ├── UpstreamError             502 upstream_error
    ├── NoAvailableChannel        503 no_available_channel (Retry-After: until the earliest probe)
    ├── DatabaseUnavailable       503 database_unavailable (unwritable or full; the reason is in the server log)
    ├── UpstreamTimeout           504 upstream_timeout
    ├── UpstreamRateLimited       429 upstream_rate_limited (the upstreams' Retry-After)
    ├── GatewayBusy               503 gateway_busy (Retry-After: 1; our own connection pool is full)
    └── InternalError             500 internal_error (details only in the server log)
    (the account API's own refusals, from invalid_credentials to ip_not_allowed: autherrors.py)

Stages raise these; only intake renders them (`error_body`, `render`). After `http.response.start`
went out an error can no longer be a JSON response: intake sends it as a final SSE `data:` event.
"""

from __future__ import annotations

import math
from typing import ClassVar

import orjson

from tokenbridge.asgi import Send


class ClientGone(Exception):
    """The caller disconnected; there is nobody to answer."""


class GatewayError(Exception):
    """A failure to report to the caller as `{"error": {message, type, param, code}}`."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = None

    def __init__(self, message: str, *, param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return orjson.dumps({"error": error})


class InvalidRequest(GatewayError):
    """The body is not what the route takes."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request_error"


class RequestTooLarge(GatewayError):
    """The body is over `server.max_body_bytes`."""

    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RequestTimeout(GatewayError):
    """The request head or body did not arrive whole within its timeout; the connection is closed."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"connection": "close"})


class RequestHeaderTooLarge(GatewayError):
    """The request head is over `server.max_header_bytes`; sent by the connection (wire.py), then closed."""

    status = 431
    type = "invalid_request_error"
    code = "request_header_too_large"


class TooManyConnections(GatewayError):
    """Over `server.max_connections`: sent by the connection (wire.py) as it is accepted, then closed."""

    status = 503
    type = "server_error"
    code = "too_many_connections"


class InvalidApiKey(GatewayError):
    """No key, or one that is unknown, revoked or expired."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    """The caller is known but may not do this (a key holder on an admin-only route or another key's data)."""

    status = 403
    type = "permission_error"
    code = "permission_denied"


class UnknownKey(GatewayError):
    """No key has that name (or, for a key holder, it is not theirs: the same answer, nothing revealed)."""

    status = 404
    type = "invalid_request_error"
    code = "key_not_found"


class DuplicateKey(GatewayError):
    """A key with that name exists already."""

    status = 409
    type = "invalid_request_error"
    code = "key_exists"


class BalanceOutOfRange(GatewayError):
    """A credit that would take the key's balance past what a balance holds: refused, nothing booked.
    A conflict with the key's state (the same amount is fine on another key), not a bad field."""

    status = 409
    type = "invalid_request_error"
    code = "balance_out_of_range"


class ModelNotFound(GatewayError):
    """No channel serves the model, or the key may not use it."""

    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


def unknown_model(model: str) -> ModelNotFound:
    """The same answer for a model nobody serves and one this key may not use: no catalogue probing."""
    return ModelNotFound(f"The model '{model}' does not exist or you do not have access to it.", param="model")


class RouteNotFound(GatewayError):
    """No such route."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(GatewayError):
    """The route exists but not for this method."""

    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class QuotaExceeded(GatewayError):
    """The balance minus open holds cannot cover this request's worst case."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"

    def __init__(self, message: str) -> None:
        # OpenAI SDKs honour x-should-retry: retrying cannot help until the key is topped up.
        super().__init__(message, headers={"x-should-retry": "false"})


class RateLimited(GatewayError):
    """The key's RPM or TPM limit is reached; `Retry-After` says when the minute frees up."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int, kind: str) -> None:
        super().__init__(message, headers={"retry-after": str(retry_after_s)})
        self.limit = kind  # OpenAI's error type says which limit: "requests" or "tokens"

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.limit, "param": None, "code": self.code}})


class BillingUnavailable(GatewayError):
    """The answer came back but its settle could not be written, so the part that completes it is withheld."""

    status = 503
    type = "server_error"
    code = "billing_unavailable"


class UpstreamError(GatewayError):
    """Every channel tried failed before a byte reached the caller."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class NoAvailableChannel(GatewayError):
    """Channels serve the model but none can be tried now; `Retry-After` says when the first probe is due."""

    status = 503
    type = "upstream_error"
    code = "no_available_channel"

    def __init__(self, model: str, *, retry_in_s: float) -> None:
        retry_after = retry_after_header(retry_in_s)
        super().__init__(
            f"Every channel for model '{model}' failed recently and is cooling down; try again in {retry_after}s.",
            headers={"retry-after": retry_after},
        )


def retry_after_header(seconds: float) -> str:
    """Whole seconds, rounded up and at least 1: a client told 0 would retry at once, into the same wall."""
    return str(max(1, math.ceil(seconds)))


class DatabaseUnavailable(GatewayError):
    """The gateway's database cannot take a write now (read-only, disk full, I/O error): not the caller's doing."""

    status = 503
    type = "server_error"
    code = "database_unavailable"


class UpstreamTimeout(GatewayError):
    """The upstream did not answer in time."""

    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


class UpstreamRateLimited(GatewayError):
    """Every channel tried answered 429: the caller may retry when the upstream said it could."""

    status = 429
    type = "upstream_error"
    code = "upstream_rate_limited"

    def __init__(self, message: str, *, retry_in_s: float | None) -> None:
        super().__init__(message, headers={} if retry_in_s is None else {"retry-after": retry_after_header(retry_in_s)})


class GatewayBusy(GatewayError):
    """Our own pool of upstream connections stayed full: not the channel's fault, so no failover either."""

    status = 503
    type = "server_error"
    code = "gateway_busy"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"retry-after": "1"})


class InternalError(GatewayError):
    """A bug: the traceback goes to the server log, never to the caller."""

    status = 500
    type = "server_error"
    code = "internal_error"


async def render(
    error: GatewayError, send: Send, *, request_id: str, body: bytes | None = None, status: int | None = None
) -> None:
    """Send `error` as a complete JSON response (only before `http.response.start`); `body` and
    `status` where the route's face (faces.py) shows errors in another shape."""
    body = error.body() if body is None else body
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    headers += [(k.encode(), v.encode()) for k, v in error.headers.items()]
    await send(
        {"type": "http.response.start", "status": error.status if status is None else status, "headers": headers}
    )
    await send({"type": "http.response.body", "body": body})


def sse_error_event(error: GatewayError) -> bytes:
    """The final SSE event of a stream that broke after it started: no `[DONE]` follows it."""
    return b"data: " + error.body() + b"\n\n"
