"""Body: read the request once (size-limited), parse it once, check its shape, fill the Call.

The route table says which shape a route takes (`route`: chat or completions); no stage looks at the path.

What goes upstream is the checked body, re-serialised (`call.raw_body`), never the caller's bytes.
orjson reads a key given twice last-wins, and an upstream that keeps the first would read another
request than the one checked: `{"model": "other", "model": "allowed"}` would pass the key's
allowlist and be served `other`, a doubled `max_tokens` would outrun the hold. Writing the parsed
body back out costs one orjson.dumps (about 0.3 µs for a typical chat body, 40 µs per MB: less than
any scan of the bytes for duplicates); a compact body mostly comes out byte for byte the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

from tokenbridge.asgi import ASGIApp, Receive, Scope, Send
from tokenbridge.call import get_call
from tokenbridge.embeddings import check_embedding_request
from tokenbridge.errors import ClientGone, InvalidRequest, RequestTimeout, RequestTooLarge
from tokenbridge.logs import peer

log = logging.getLogger("tokenbridge")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def read_body(scope: Scope, receive: Receive, limit: int, *, timeout_s: float) -> bytes:
    """The whole body, refusing more than `limit` bytes before reading them where the length is announced,
    and a body not whole within `timeout_s` (a slow or never-ending one would hold the connection and
    its task for ever): 408, and the connection is closed."""
    declared = _content_length(scope)
    if declared is not None and declared > limit:
        raise RequestTooLarge(f"The request body is {declared} bytes; the limit is {limit} bytes.")
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_chunks(receive, limit)
    except TimeoutError:
        client = peer(scope.get("client"))
        log.warning("closed a connection from %s: request body not complete within %gs", client, timeout_s)
        raise RequestTimeout(f"The request body was not complete within {timeout_s:g}s.") from None


async def _read_chunks(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()  # it left before its body was whole: nobody is there to read an answer
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"The request body is over the limit of {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _check_chat(body: dict[str, Any]) -> None:
    value = _required(body, "messages")
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"'messages[{i}]' must be an object with a 'role'.", param=f"messages[{i}]")


def _check_completions(body: dict[str, Any]) -> None:
    value = _required(body, "prompt")
    if not isinstance(value, str | list) or value == []:
        raise InvalidRequest("'prompt' must be a string or a non-empty array.", param="prompt")


def _check_embeddings(body: dict[str, Any]) -> None:
    _required(body, "input")
    check_embedding_request(body)


def _check_messages(body: dict[str, Any]) -> None:
    """Anthropic's Messages request: `messages` as chat's, and `max_tokens`, which Anthropic requires too."""
    _check_chat(body)
    _required(body, "max_tokens")  # its type: below, with every route's
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise InvalidRequest("'system' must be a string or an array of text blocks.", param="system")


def _check_responses(body: dict[str, Any]) -> None:
    value = _required(body, "input")
    if not isinstance(value, str) and not (isinstance(value, list) and all(isinstance(i, dict) for i in value)):
        raise InvalidRequest("'input' must be a string or an array of input items (objects).", param="input")
    for name, kind, what in (
        ("instructions", str, "a string"),
        ("tools", list, "an array"),
        ("text", dict, "an object"),
    ):
        if body.get(name) is not None and not isinstance(body[name], kind):
            raise InvalidRequest(f"'{name}' must be {what}.", param=name)
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, str | dict):
        raise InvalidRequest("'tool_choice' must be a string or an object.", param="tool_choice")
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise InvalidRequest("'max_output_tokens' must be a positive integer.", param="max_output_tokens")


def _required(body: dict[str, Any], field: str) -> Any:
    value = body.get(field)
    if value is None:
        raise InvalidRequest(f"Missing required parameter: '{field}'.", param=field)
    return value


# What each route's body must hold past `model` and the common fields: a function that raises
# InvalidRequest naming the field. A new route adds its row (adapters.ROUTES lists the routes).
ROUTE_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "chat": _check_chat,
    "completions": _check_completions,
    "embeddings": _check_embeddings,
    "messages": _check_messages,
    "responses": _check_responses,
}


def check_shape(route: str, body: Any) -> dict[str, Any]:
    """The body as a dict, or an InvalidRequest naming the field that is wrong."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        raise InvalidRequest("You must provide a model parameter.", param="model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    ROUTE_CHECKS[route](body)
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")
    for name in ("max_tokens", "max_completion_tokens", "n"):
        limit = body.get(name)
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise InvalidRequest(f"'{name}' must be a positive integer.", param=name)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
    return body


class BodyMiddleware:
    """Fills call.route, raw_body, body, model, stream."""

    def __init__(self, app: ASGIApp, *, route: str) -> None:
        if route not in ROUTE_CHECKS:
            raise ValueError(f"unknown route {route!r}")
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = get_call(scope)
        call.route = self.route  # first: an error from here on is shown in the route's face (faces.py)
        server = call.settings.server
        raw = await read_body(scope, receive, server.max_body_bytes, timeout_s=server.body_timeout_s)
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(
                "We could not parse the JSON body of your request. The body must be a JSON object."
            ) from exc
        call.body = check_shape(self.route, parsed)
        call.raw_body = orjson.dumps(call.body)  # see the module docstring
        call.model = call.body["model"]
        call.stream = call.body.get("stream") is True
        del raw  # the caller's bytes are not needed past here: do not keep two copies for the whole request
        await self.app(scope, receive, send)
