"""Meter: tap the response on its way out for status, time to first byte, usage and how it ended.

Bytes pass through untouched, never re-serialised. A stream is released in whole events: bytes of
an event whose blank line has not arrived yet wait for it (at most one event, MAX_EVENT_BYTES).
That costs the caller nothing, since a client cannot use half an event, and it buys two things:
the usage chunk the gateway asked for on the caller's behalf can be cut out cleanly, and an error
event after a break never lands inside a half-sent event. Upstreams write whole events, so in
practice every chunk goes out as it came. Only an event that carries a non-null `"usage"` is parsed.

A stream that ends without `data: [DONE]` is an upstream failure, not a complete answer: the meter
raises, so the caller gets a final SSE error event instead of a clean end. One that breaks after
`[DONE]` was complete: it ends cleanly at `[DONE]`. A stream's Content-Length is never passed on,
since the body the caller gets is not the upstream's byte for byte (usage chunk cut, error event added).

Usage comes from the upstream's `usage`, from whichever chunk carries it (two that disagree: see
`SseTap._take_usage`). When there is none (the upstream sends none, the caller left before it came,
the stream broke), the tokens are counted offline (tokens.py): the prompt, plus the completion text
actually delivered to the caller, and the row says `usage_source = estimated`. Nearly every stream
brings its usage, so its text events are kept as they are, unread; past UNREAD_TEXT_EVENT_BYTES
the oldest are read a batch at a time and only their text is kept, so what a long stream holds
stays small. An estimate reads what is left, and counts, in a worker thread, off the event loop.
A request that failed before any byte reached the caller is not estimated: it costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from tokenbridge.asgi import ASGIApp, Message, Receive, Scope, Send, is_event_stream
from tokenbridge.call import Call, caller_wants_usage, get_call
from tokenbridge.errors import ClientGone, GatewayError, UpstreamError
from tokenbridge.money import Usage
from tokenbridge.outcome import failure_reason
from tokenbridge.stages.chat_tap import JsonTap
from tokenbridge.stages.dialects import CHAT, StreamTap, dialect_of
from tokenbridge.tokens import estimate
from tokenbridge.upstream.redact import mask_secrets

log = logging.getLogger("tokenbridge")


class MeterMiddleware:
    """Writes call.status, ttfb, usage, usage_source, complete, end_reason, error.

    `complete` is written the moment the answer is whole, before the message that completes it goes
    out (`data: [DONE]`, or the last byte of a JSON body's Content-Length): a client stops reading
    there, so that is when quota must have settled (see outcome.py).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = get_call(scope)
        sse: StreamTap | None = None
        json: JsonTap | None = None
        dialect = CHAT

        async def send_with_usage(message: Message) -> None:
            nonlocal sse, json, dialect
            if message["type"] == "http.response.start":
                call.status = message["status"]
                dialect = dialect_of(call.wire or call.route)
                if is_event_stream(message["headers"]):
                    strip = call.stream and not caller_wants_usage(call.upstream_body)
                    sse = dialect.stream(strip=strip, request_id=call.request_id)
                    # Not the upstream's length: a cut usage chunk makes the body shorter, and the error
                    # event that ends a broken stream makes it longer.
                    message["headers"] = [(k, v) for k, v in message["headers"] if k != b"content-length"]
                else:
                    length = next((v for k, v in message["headers"] if k == b"content-length"), b"")
                    json = JsonTap(int(length) if length.isdigit() else None)
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if call.ttfb is None and body:
                    call.ttfb = time.perf_counter() - call.started
                more = message.get("more_body", False)
                if sse is not None:
                    out = sse.feed(body)
                    if sse.fault is not None:
                        if out:
                            await send({"type": "http.response.body", "body": out, "more_body": True})
                        channel = call.channel.name if call.channel else "?"
                        secret = call.channel.api_key if call.channel else ""
                        log.warning(
                            "request %s: channel %r sent a stream event that is not JSON: %r",
                            call.request_id, channel, mask_secrets(sse.fault, secret),
                        )  # fmt: skip
                        raise UpstreamError("The upstream sent a stream event that is not JSON; the answer may be cut.")
                    if not more:
                        out += sse.finish()
                        if not sse.done:  # see the module docstring
                            if out:
                                await send({"type": "http.response.body", "body": out, "more_body": True})
                            raise UpstreamError(
                                f"The upstream ended the stream without {dialect.end}; the answer may be cut."
                            )
                    if sse.done and not call.complete:
                        await self._account(call, sse.usage, sse.texts)
                        call.complete = True
                    if out is not body:
                        message["body"] = out
                elif json is not None:
                    json.feed(body)
                    if not call.complete and (not more or json.complete()):
                        payload = call.answer if call.answer is not None else json.payload()  # parsed once
                        await self._account(call, dialect.usage(payload), lambda: dialect.texts(payload))
                        call.complete = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_usage)
        except (GatewayError, ClientGone) as exc:
            if isinstance(exc, GatewayError) and sse is not None and sse.done:
                # The upstream broke after [DONE]: the answer is whole and settled, so it ends as it is,
                # not with an error event after [DONE] (the channel's breaker has counted the break).
                log.warning("request %s: the upstream broke after %s: %s", call.request_id, dialect.end, exc.message)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            self._ended_badly(call, exc)
            # A failure before any byte reached the caller costs nothing; a caller that left after the
            # upstream had its request pays for the prompt (and whatever it received).
            if call.delivered or (isinstance(exc, ClientGone) and call.attempts > 0):
                await self._account(call, sse.usage if sse else None, sse.texts if sse else list)
            else:  # usage read before an outer stage failed (say, a translation) was never delivered
                call.usage, call.usage_source = None, ""
            raise
        except BaseException as exc:
            self._ended_badly(call, exc)
            raise

    @staticmethod
    async def _account(call: Call, usage: Usage | None, texts: Callable[[], list[str]]) -> None:
        """call.usage from the upstream, or counted offline from what was delivered."""
        if usage is not None:
            call.usage, call.usage_source = usage, "upstream"
            return
        if call.status not in (0, 200):
            return  # an upstream error answer: nothing was produced, nothing to bill
        model = call.upstream_model or call.model
        try:
            delivered = await asyncio.to_thread(texts)  # reading a stream's events is CPU work too
            prompt, completion = await estimate(call.upstream_body or call.body, delivered, model, route=call.route)
        except Exception:  # an estimate must never fail the request; the row then says no usage
            log.exception("request %s: could not estimate its tokens", call.request_id)
            return
        call.usage, call.usage_source = Usage(prompt, completion), "estimated"

    @staticmethod
    def _ended_badly(call: Call, exc: BaseException) -> None:
        call.end_reason, error = failure_reason(exc)
        call.error = error or call.error
