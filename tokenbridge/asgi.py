"""The ASGI contract, typed once (as starlette/types.py does) so every stage shares it."""

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_event_stream(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Does a response head announce server-sent events?"""
    return any(k == b"content-type" and v.startswith(b"text/event-stream") for k, v in headers)
