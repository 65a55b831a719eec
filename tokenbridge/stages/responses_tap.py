"""The native Responses wire's dialect for the meter: usage and the end event in Responses SSE and JSON.

A Responses stream ends with one of `response.completed`, `response.incomplete` or
`response.failed` (there is no `[DONE]`), and that event's `response.usage` is what the upstream
bills: `input_tokens` (of which `input_tokens_details.cached_tokens` were cached) and
`output_tokens` (reasoning included). Only those events are parsed. A stream cut before one of them
is estimated from the text it delivered: `response.output_text.delta`, function call argument and
custom tool input deltas (the `*.done` events repeat them, and are not counted). As in chat_tap.py
the bytes pass through untouched, in whole events, and the delta events are kept unread, bounded,
until an estimate needs them.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

from tokenbridge.money import Usage
from tokenbridge.stages.chat_tap import MAX_DELIVERED_TEXT_BYTES, UNREAD_TEXT_EVENT_BYTES, token_count
from tokenbridge.upstream.sse import MAX_EVENT_BYTES, EventSplitter, event_data, readable_event

END_EVENTS = ("response.completed", "response.incomplete", "response.failed")
_END_MARKS = tuple(f'"{kind}"'.encode() for kind in END_EVENTS)
DELTA_EVENTS = (
    "response.output_text.delta", "response.function_call_arguments.delta", "response.custom_tool_call_input.delta",
)  # fmt: skip
_DELTA_MARKS = tuple(f'"{kind}"'.encode() for kind in DELTA_EVENTS)
_OBJECT_ENDS = (b"}\n\n", b"}\r\n\r\n", b"}\r\r")


def usage_from(payload: Any) -> Usage | None:
    """A `response` object's `usage` (or an event's that carries the response) -> Usage, or None.

    Refused as in chat_tap.usage_from: counts that are missing, negative, boolean, past
    Usage.MAX_TOKENS, or more cached than input tokens; the request is then estimated.
    """
    if isinstance(payload, dict) and isinstance(payload.get("response"), dict):
        payload = payload["response"]
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = token_count(usage.get("input_tokens")), token_count(usage.get("output_tokens"))
    details = usage.get("input_tokens_details")
    raw_cached = details.get("cached_tokens") if isinstance(details, dict) else None
    cached = 0 if raw_cached is None else token_count(raw_cached)
    if prompt is None or completion is None or cached is None or cached > prompt:
        return None
    return Usage(prompt, completion, cached)


def answer_texts(payload: Any) -> list[str]:
    """The answer text of a `response` object: output text, refusals, function arguments, custom tool inputs."""
    output = payload.get("output") if isinstance(payload, dict) else None
    texts: list[str] = []
    for item in output if isinstance(output, list) else ():
        if not isinstance(item, dict):
            continue
        for field in ("name", "arguments", "input"):
            if isinstance(item.get(field), str) and item.get("type") != "message":
                texts.append(item[field])
        content = item.get("content")
        for part in content if isinstance(content, list) else ():
            text = part.get("text", part.get("refusal")) if isinstance(part, dict) else None
            if isinstance(text, str):
                texts.append(text)
    return texts


def _readable(event: bytes) -> bool:
    """As upstream.sse.readable_event, without parsing the `event:` + `data: {...}` events a Responses stream is made of."""
    return (b"data: {" in event and event.endswith(_OBJECT_ENDS)) or readable_event(event)


class ResponsesTap:
    """Reads a native Responses SSE stream for its end event's usage (dialects.StreamTap)."""

    __slots__ = ("splitter", "fault", "usage", "done", "unread", "unread_bytes", "text", "text_bytes")

    def __init__(self, *, strip: bool = False, request_id: str = "") -> None:
        # `strip` is for chat's usage chunk: a Responses stream carries its usage in its end event, always.
        self.splitter = EventSplitter()
        self.fault: str | None = None
        self.usage: Usage | None = None
        self.done = False
        self.unread: deque[bytes] = deque()  # delta events that went out, not yet read for their text
        self.unread_bytes = 0
        self.text: list[str] = []  # the text of the delta events read so far
        self.text_bytes = 0

    def feed(self, data: bytes) -> bytes:
        held = self.splitter.held > 0
        events = self.splitter.feed(data)
        cut = False
        for i, event in enumerate(events):
            if not _readable(event):
                self.fault, events, cut = event[:80].decode(errors="replace"), events[:i], True
                break
            self._read(event)
        if self.splitter.held > MAX_EVENT_BYTES:  # not SSE as we know it: stop holding, pass it on
            events.append(self.splitter.take_tail())
            cut = True
        if not held and not self.splitter.held and not cut:
            return data
        return b"".join(events)

    def _read(self, event: bytes) -> None:
        if any(mark in event for mark in _DELTA_MARKS):
            if self.text_bytes < MAX_DELIVERED_TEXT_BYTES:
                self.unread.append(event)
                self.unread_bytes += len(event)
                while self.unread_bytes > UNREAD_TEXT_EVENT_BYTES:
                    self._read_oldest()
        elif any(mark in event for mark in _END_MARKS):
            try:
                payload = orjson.loads(event_data(event))
            except orjson.JSONDecodeError:
                return
            if isinstance(payload, dict) and payload.get("type") in END_EVENTS:
                self.done = True
                self.usage = usage_from(payload) or self.usage

    def _read_oldest(self) -> None:
        event = self.unread.popleft()
        self.unread_bytes -= len(event)
        texts = _deltas([event])
        self.text += texts
        self.text_bytes += sum(len(text) for text in texts)

    def finish(self) -> bytes:
        return self.splitter.take_tail()

    def texts(self) -> list[str]:
        """The answer text delivered so far (called in a worker thread)."""
        return self.text + _deltas(self.unread)


def _deltas(events: Any) -> list[str]:
    texts: list[str] = []
    for event in events:
        try:
            payload = orjson.loads(event_data(event))
        except orjson.JSONDecodeError:
            continue
        delta = payload.get("delta") if isinstance(payload, dict) else None
        if isinstance(delta, str):
            texts.append(delta)
    return texts
