"""Meter: tap the response on its way out for status, time to first byte, usage and how it ended.

Bytes pass through untouched, never re-serialised. A stream is released in whole events: bytes of
an event whose blank line has not arrived yet wait for it (at most one event, MAX_EVENT_BYTES).
That costs the caller nothing, since a client cannot use half an event, and it buys two things:
the usage chunk the gateway asked for on the caller's behalf can be cut out cleanly, and an error
event after a break never lands inside a half-sent event. Upstreams write whole events, so in
practice every chunk goes out as it came. Only an event that carries a non-null `"usage"` is parsed.

A stream that ends without `data: [DONE]` is an upstream failure, not a complete answer: the meter
raises, so the caller gets a final SSE error event instead of a clean end.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from tokenbridge.asgi import ASGIApp, Message, Receive, Scope, Send
from tokenbridge.call import Call, caller_wants_usage, get_call
from tokenbridge.errors import ClientGone, GatewayError, UpstreamError, UpstreamTimeout
from tokenbridge.money import Usage
from tokenbridge.upstream.sse import MAX_EVENT_BYTES, EventSplitter, event_data

MAX_JSON_BYTES = 8 << 20  # a JSON answer larger than this is passed on but not read for usage

_USAGE = b'"usage"'
_NO_USAGE = b'"usage":null'  # OpenAI's form in every chunk of a stream that asked for usage
_DONE = b"[DONE]"


def usage_from(payload: Any) -> Usage | None:
    """OpenAI's `usage` object -> Usage, or None when absent/null/malformed."""
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(prompt, completion, cached if isinstance(cached, int) else 0)


class SseTap:
    """Reads a chat SSE stream for usage and `[DONE]`; in strip mode cuts out the usage-only chunk."""

    __slots__ = ("splitter", "strip", "usage", "done")

    def __init__(self, *, strip: bool) -> None:
        self.splitter = EventSplitter()
        self.strip = strip
        self.usage: Usage | None = None
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """The whole events completed by `data`, less a cut-out usage chunk."""
        held = bool(self.splitter.tail)
        events = self.splitter.feed(data)
        kept = [event for event in events if not self._read(event)]
        if len(self.splitter.tail) > MAX_EVENT_BYTES:  # not SSE as we know it: stop holding, pass it on
            kept.append(self.splitter.tail)
            self.splitter.tail = b""
        if not held and not self.splitter.tail and len(kept) == len(events):
            return data  # the common case: whole events in, the same bytes out, no copy
        return b"".join(kept)

    def finish(self) -> bytes:
        """At the end of the stream: a last event left without its blank line (lenient on `data: [DONE]`)."""
        tail, self.splitter.tail = self.splitter.tail, b""
        if tail and event_data(tail).strip() == _DONE:
            self.done = True
        return tail

    def _read(self, event: bytes) -> bool:
        """Take what billing needs from one event; True if it is to be cut out."""
        if _USAGE not in event or _NO_USAGE in event:
            if _DONE in event and event_data(event) == _DONE:
                self.done = True
            return False
        try:
            payload = orjson.loads(event_data(event))
        except orjson.JSONDecodeError:
            return False
        usage = usage_from(payload)
        if usage is None:
            return False
        self.usage = usage
        return self.strip and payload.get("choices") == []


class JsonTap:
    """Keeps a bounded copy of a JSON answer to read its usage at the end."""

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def feed(self, data: bytes) -> bytes:
        self.size += len(data)
        if self.size <= MAX_JSON_BYTES:
            self.chunks.append(data)
        return data

    def usage(self) -> Usage | None:
        if self.size > MAX_JSON_BYTES:
            return None
        try:
            return usage_from(orjson.loads(b"".join(self.chunks)))
        except orjson.JSONDecodeError:
            return None


class MeterMiddleware:
    """Writes call.status, ttfb, usage, end_reason, error."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = get_call(scope)
        sse: SseTap | None = None
        json: JsonTap | None = None

        async def send_with_usage(message: Message) -> None:
            nonlocal sse, json
            if message["type"] == "http.response.start":
                call.status = message["status"]
                is_sse = any(k == b"content-type" and v.startswith(b"text/event-stream") for k, v in message["headers"])
                if is_sse:
                    sse = SseTap(strip=call.stream and not caller_wants_usage(call.upstream_body))
                else:
                    json = JsonTap()
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if call.ttfb is None and body:
                    call.ttfb = time.perf_counter() - call.started
                more = message.get("more_body", False)
                if sse is not None:
                    out = sse.feed(body)
                    if not more:
                        out += sse.finish()
                        call.usage = sse.usage
                        if not sse.done:  # see the module docstring
                            if out:
                                await send({"type": "http.response.body", "body": out, "more_body": True})
                            raise UpstreamError("The upstream ended the stream without [DONE]; the answer may be cut.")
                    if out is not body:
                        message["body"] = out
                elif json is not None:
                    json.feed(body)
                    if not more:
                        call.usage = json.usage()
                if not more:
                    call.end_reason = "done"  # before the last byte goes out, so the settle records it
            await send(message)

        try:
            await self.app(scope, receive, send_with_usage)
        except BaseException as exc:
            self._ended_badly(call, exc, sse)
            raise

    @staticmethod
    def _ended_badly(call: Call, exc: BaseException, sse: SseTap | None) -> None:
        if sse is not None:
            call.usage = sse.usage  # whatever had arrived before the end
        if isinstance(exc, ClientGone):
            call.end_reason = "client_gone"
        elif isinstance(exc, UpstreamTimeout):
            call.end_reason, call.error = "timeout", exc.message
        elif isinstance(exc, GatewayError):
            call.end_reason, call.error = "upstream_error", exc.message
        else:
            call.end_reason, call.error = "upstream_error", f"{type(exc).__name__} in the gateway"
