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
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from tokenbridge.asgi import ASGIApp, Message, Receive, Scope, Send, is_event_stream
from tokenbridge.call import Call, caller_wants_usage, get_call
from tokenbridge.embeddings import TAIL_BYTES, usage_at_end
from tokenbridge.errors import ClientGone, GatewayError, UpstreamError
from tokenbridge.limits import MAX_JSON_BYTES
from tokenbridge.money import Usage
from tokenbridge.outcome import failure_reason
from tokenbridge.routing import WITHOUT_OUTPUT
from tokenbridge.tokens import estimate, tool_call_texts
from tokenbridge.upstream.redact import mask_secrets
from tokenbridge.upstream.sse import MAX_EVENT_BYTES, EventSplitter, event_data, readable_event

log = logging.getLogger("tokenbridge")

# Delivered text events kept as they are, unread (most streams bring their usage and are never read);
# past this, the oldest are read for their text PARSE_BATCH_BYTES at a time.
UNREAD_TEXT_EVENT_BYTES = 256 << 10
PARSE_BATCH_BYTES = 64 << 10
# Answer text kept per stream for an estimate: ~250k tokens, more than a model writes in one answer.
# Beyond it the count stops growing.
MAX_DELIVERED_TEXT_BYTES = 1 << 20
_TEXT = (b'"content"', b'"text"', b'"tool_calls"', b'"function_call"')


def _has_text(event: bytes) -> bool:
    """Whether an event may carry answer text (a tool call's name and arguments count as text)."""
    return _TEXT[0] in event or _TEXT[1] in event or _TEXT[2] in event or _TEXT[3] in event


_USAGE = b'"usage"'
_NO_USAGE = b'"usage":null'  # OpenAI's form in every chunk of a stream that asked for usage
# What the gateway's own include_usage adds to each chunk, cut out again for a caller that did not
# ask: a byte edit, not a re-serialisation. It cannot match inside a JSON string (quotes are escaped).
_ADDED_NULL_USAGE = (b',"usage":null', b', "usage": null')
_DONE = b"[DONE]"


def answer_texts(payload: Any) -> list[str]:
    """The answer text in a chat completion, a chat chunk, or a (native) text completion; tool calls count as text."""
    texts: list[str] = []
    choices = payload.get("choices") if isinstance(payload, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        part = choice.get("delta") or choice.get("message") or {}
        text = part.get("content") if isinstance(part, dict) else None
        text = text if isinstance(text, str) else choice.get("text")
        if isinstance(text, str):
            texts.append(text)
        texts += tool_call_texts(part)
    return texts


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= Usage.MAX_TOKENS else None


def usage_from(payload: Any, *, output: bool = True) -> Usage | None:
    """OpenAI's `usage` object -> Usage, or None when absent, null, malformed or impossible.
    `output=False`: an answer without output (embeddings), whose usage has no `completion_tokens` (0).

    Impossible counts (negative, boolean, more cached than prompt tokens) are refused: priced, they
    would make a negative charge that raises a balance. So are counts past Usage.MAX_TOKENS, which no one
    request has: 2**63 cannot even be written to SQLite, and a few rows of 9e18 overflow its SUM().
    The request is then estimated instead.
    """
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens", None if output else 0))
    if prompt is None or completion is None:
        return None
    details = usage.get("prompt_tokens_details")
    raw_cached = details.get("cached_tokens") if isinstance(details, dict) else None
    cached = 0 if raw_cached is None else _count(raw_cached)
    if cached is None or cached > prompt:
        return None
    return Usage(prompt, completion, cached)


class SseTap:
    """Reads a chat SSE stream for usage and `[DONE]`; in strip mode cuts out the usage-only chunk."""

    __slots__ = (
        "splitter", "strip", "fault", "request_id", "usage", "done", "unread", "unread_bytes", "text", "text_bytes",
    )  # fmt: skip

    def __init__(self, *, strip: bool, request_id: str = "") -> None:
        self.splitter = EventSplitter()
        self.strip = strip
        self.request_id = request_id  # for the log
        self.usage: Usage | None = None
        self.done = False
        self.unread: deque[bytes] = deque()  # events with answer text that went out, not yet read for it
        self.unread_bytes = 0
        self.text: list[bytes] = []  # the answer text (UTF-8) of the events read so far, a piece per batch
        self.text_bytes = 0
        self.fault: str | None = None  # the start of an event no client could read: the stream ends there

    def feed(self, data: bytes) -> bytes:
        """The whole events completed by `data`, less a cut-out usage chunk."""
        held = self.splitter.held > 0
        events = self.splitter.feed(data)
        cut = False
        for i, event in enumerate(events):
            if not readable_event(event):  # what came before it goes out; it and what follows do not
                self.fault, events, cut = event[:80].decode(errors="replace"), events[:i], True
                break
        kept = [event for event in events if not self._read(event)]
        edited = cut or len(kept) != len(events)
        if self.strip and any(_NO_USAGE in e or _ADDED_NULL_USAGE[1] in e for e in kept):
            kept, edited = [_without_null_usage(e) for e in kept], True
        for event in kept:
            if self.text_bytes < MAX_DELIVERED_TEXT_BYTES and _has_text(event):
                self.unread.append(event)
                self.unread_bytes += len(event)
        while self.unread_bytes > UNREAD_TEXT_EVENT_BYTES:
            self._read_oldest()
        if self.splitter.held > MAX_EVENT_BYTES:  # not SSE as we know it: stop holding, pass it on
            kept.append(self.splitter.take_tail())
        if not held and not self.splitter.held and not edited:
            return data  # the common case: whole events in, the same bytes out, no copy
        return b"".join(kept)

    def texts(self) -> list[str]:
        """The answer text delivered so far. CPU work on up to UNREAD_TEXT_EVENT_BYTES: not on the loop."""
        return [piece.decode() for piece in self.text] + _event_texts(self.unread)

    def _read_oldest(self) -> None:
        """Keep the oldest unread events' text, not the events: it is a small part of their bytes."""
        batch: list[bytes] = []
        size = 0
        while self.unread and size < PARSE_BATCH_BYTES:
            batch.append(self.unread.popleft())
            size += len(batch[-1])
        self.unread_bytes -= size
        text = "".join(_event_texts(batch)).encode()
        if text:
            self.text.append(text)
            self.text_bytes += len(text)

    def finish(self) -> bytes:
        """At the end of the stream: a last event left without its blank line (lenient on `data: [DONE]`)."""
        tail = self.splitter.take_tail()
        if tail and event_data(tail).strip() == _DONE:
            self.done = True
            return tail + b"\n\n"  # terminated, or a strict SSE parser would drop it
        return tail

    def _read(self, event: bytes) -> bool:
        """Take what billing needs from one event; True if it is to be cut out."""
        if _USAGE not in event or _NO_USAGE in event or _ADDED_NULL_USAGE[1] in event:
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
        self._take_usage(usage)
        return self.strip and payload.get("choices") == []

    def _take_usage(self, usage: Usage) -> None:
        """Keep the stream's usage; a second report that disagrees is checked, not taken blindly.

        OpenAI reports usage once, in a chunk after the last choice. Some servers report a running
        total in every chunk (vLLM's continuous_usage_stats), so a report that counts no fewer prompt
        and no fewer completion tokens than the one before replaces it. One that counts fewer of
        either cannot be a running total: one of the two is wrong and nothing tells which. The
        upstream bills the gateway by its own count, so the larger is kept (more tokens, then more
        output tokens; taking the last would let one bad chunk zero a bill) and the conflict logged.
        """
        seen = self.usage
        if seen is None or (
            usage.prompt_tokens >= seen.prompt_tokens and usage.completion_tokens >= seen.completion_tokens
        ):
            self.usage = usage
            return
        self.usage = max(seen, usage, key=lambda u: (u.prompt_tokens + u.completion_tokens, u.completion_tokens))
        log.warning(
            "request %s: the upstream reported usage %s, then %s (prompt/completion/cached tokens); billing %s",
            self.request_id, _counts(seen), _counts(usage), _counts(self.usage),
        )  # fmt: skip


def _counts(usage: Usage) -> str:
    return f"{usage.prompt_tokens}/{usage.completion_tokens}/{usage.cached_tokens}"


def _event_texts(events: Iterable[bytes]) -> list[str]:
    texts: list[str] = []
    for event in events:
        try:
            texts += answer_texts(orjson.loads(event_data(event)))
        except orjson.JSONDecodeError:
            continue
    return texts


def _without_null_usage(event: bytes) -> bytes:
    for added in _ADDED_NULL_USAGE:
        event = event.replace(added, b"")
    return event


class JsonTap:
    """Keeps a bounded copy of a JSON answer to read its usage at the end (past MAX_JSON_BYTES: its last bytes)."""

    __slots__ = ("chunks", "size", "expected", "tail")

    def __init__(self, expected: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.expected = expected  # Content-Length, when the upstream announced one
        self.tail = b""  # the last TAIL_BYTES of an answer over MAX_JSON_BYTES

    def complete(self) -> bool:
        """All announced bytes are in: a client reading by Content-Length has the whole answer now."""
        return self.expected is not None and self.size >= self.expected

    def feed(self, data: bytes) -> bytes:
        self.size += len(data)
        if self.size <= MAX_JSON_BYTES:
            self.chunks.append(data)
        else:
            self.tail = (self.tail + data[-TAIL_BYTES:])[-TAIL_BYTES:]
        return data

    def payload(self) -> Any:
        if self.size > MAX_JSON_BYTES:
            return usage_at_end(self.tail)
        try:
            return orjson.loads(b"".join(self.chunks))
        except orjson.JSONDecodeError:
            return None

    def usage(self) -> Usage | None:
        return usage_from(self.payload())


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
        sse: SseTap | None = None
        json: JsonTap | None = None

        async def send_with_usage(message: Message) -> None:
            nonlocal sse, json
            if message["type"] == "http.response.start":
                call.status = message["status"]
                if is_event_stream(message["headers"]):
                    strip = call.stream and not caller_wants_usage(call.upstream_body)
                    sse = SseTap(strip=strip, request_id=call.request_id)
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
                            raise UpstreamError("The upstream ended the stream without [DONE]; the answer may be cut.")
                    if sse.done and not call.complete:
                        await self._account(call, sse.usage, sse.texts)
                        call.complete = True
                    if out is not body:
                        message["body"] = out
                elif json is not None:
                    json.feed(body)
                    if not call.complete and (not more or json.complete()):
                        payload = call.answer if call.answer is not None else json.payload()  # parsed once
                        usage = usage_from(payload, output=call.route not in WITHOUT_OUTPUT)
                        await self._account(call, usage, lambda: answer_texts(payload))
                        call.complete = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_usage)
        except (GatewayError, ClientGone) as exc:
            if isinstance(exc, GatewayError) and sse is not None and sse.done:
                # The upstream broke after [DONE]: the answer is whole and settled, so it ends as it is,
                # not with an error event after [DONE] (the channel's breaker has counted the break).
                log.warning("request %s: the upstream broke after [DONE]: %s", call.request_id, exc.message)
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
