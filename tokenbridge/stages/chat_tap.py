"""The chat wire's dialect for the meter: usage and `[DONE]` in chat SSE, usage and text in chat JSON.

Also read for native `/completions` answers, which carry usage and text the same way. See meter.py
for what the meter does with what these read.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

import orjson

from tokenbridge.limits import MAX_JSON_BYTES
from tokenbridge.money import Usage
from tokenbridge.tokens import tool_call_texts
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


def count_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= Usage.MAX_TOKENS else None


def usage_from(payload: Any) -> Usage | None:
    """OpenAI's `usage` object -> Usage, or None when absent, null, malformed or impossible.

    Impossible counts (negative, boolean, more cached than prompt tokens) are refused: priced, they
    would make a negative charge that raises a balance. So are counts past Usage.MAX_TOKENS, which no one
    request has: 2**63 cannot even be written to SQLite, and a few rows of 9e18 overflow its SUM().
    The request is then estimated instead.
    """
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = count_or_none(usage.get("prompt_tokens")), count_or_none(usage.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    details = usage.get("prompt_tokens_details")
    raw_cached = details.get("cached_tokens") if isinstance(details, dict) else None
    cached = 0 if raw_cached is None else count_or_none(raw_cached)
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
    """Keeps a bounded copy of a JSON answer to read its usage at the end."""

    __slots__ = ("chunks", "size", "expected")

    def __init__(self, expected: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.expected = expected  # Content-Length, when the upstream announced one

    def complete(self) -> bool:
        """All announced bytes are in: a client reading by Content-Length has the whole answer now."""
        return self.expected is not None and self.size >= self.expected

    def feed(self, data: bytes) -> bytes:
        self.size += len(data)
        if self.size <= MAX_JSON_BYTES:
            self.chunks.append(data)
        return data

    def payload(self) -> Any:
        if self.size > MAX_JSON_BYTES:
            return None
        try:
            return orjson.loads(b"".join(self.chunks))
        except orjson.JSONDecodeError:
            return None

    def usage(self) -> Usage | None:
        return usage_from(self.payload())
