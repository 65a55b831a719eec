"""The `messages` wire's dialect for the meter: Anthropic's Messages API, read for usage and its end.

A stream says its usage twice: `message_start` carries the input side (`input_tokens`, the cache
reads and writes) with a first `output_tokens`, and each `message_delta` the cumulative
`output_tokens` so far (newer API versions repeat the input side there too). The usage is the
input side of the latest event that had one, with the output of the last `message_delta`; it
counts as the upstream's only once a `message_delta` came, so a stream cut before it is estimated
from what was delivered (as a chat stream cut before its usage chunk is), never billed at the one
output token `message_start` announces. The stream is whole at `message_stop`.

Anthropic's `input_tokens` excludes cache reads and writes (OpenAI's `prompt_tokens` includes its
cached tokens), so a Usage's prompt is input + cache_read + cache_creation, its cached tokens the
cache reads, its cache-write tokens the cache creation: one meaning for every row, whatever the route.

Bytes pass through untouched (chat_tap.SseTap does the framing, the bounds and the no-copy rule);
only events that name `"usage"` or end the stream are parsed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from tokenbridge.money import Usage
from tokenbridge.stages.chat_tap import SseTap, token_count
from tokenbridge.upstream.sse import event_data

_USAGE = b'"usage"'
_STOP = b"message_stop"
# Deltas and starts whose text an estimate counts: answer text, tool input JSON, thinking, a tool's name.
_TEXT = (b'"text_delta"', b'"input_json_delta"', b'"thinking_delta"', b'"tool_use"')


def usage_of(counts: Any) -> Usage | None:
    """Anthropic's `usage` object -> Usage, or None when absent or impossible (see chat_tap.usage_from)."""
    if not isinstance(counts, dict):
        return None
    uncached, output = token_count(counts.get("input_tokens")), token_count(counts.get("output_tokens"))
    raw_read, raw_written = counts.get("cache_read_input_tokens"), counts.get("cache_creation_input_tokens")
    read = 0 if raw_read is None else token_count(raw_read)
    written = 0 if raw_written is None else token_count(raw_written)
    if uncached is None or output is None or read is None or written is None:
        return None
    prompt = uncached + read + written
    if prompt > Usage.MAX_TOKENS:
        return None
    return Usage(prompt, output, read, written)


def usage_from_message(payload: Any) -> Usage | None:
    """The usage of a whole (non-stream) Messages answer."""
    return usage_of(payload.get("usage")) if isinstance(payload, dict) else None


def block_texts(block: Any) -> list[str]:
    """The text an answer's content block (or a stream's delta) delivers: text, thinking, a tool call's name and input."""
    if not isinstance(block, dict):
        return []
    texts = [block[name] for name in ("text", "thinking", "partial_json", "name") if isinstance(block.get(name), str)]
    if block.get("type") == "tool_use" and isinstance(block.get("input"), dict) and block["input"]:
        texts.append(orjson.dumps(block["input"]).decode())
    return texts


def message_texts(payload: Any) -> list[str]:
    """The answer text of a whole Messages answer."""
    content = payload.get("content") if isinstance(payload, dict) else None
    return [text for block in content if isinstance(content, list) for text in block_texts(block)] if content else []


class MessagesTap(SseTap):
    """Reads an Anthropic Messages stream for usage and `message_stop`; never edits it."""

    __slots__ = ("counts", "deltas")

    def __init__(self, *, strip: bool = False, request_id: str = "") -> None:
        super().__init__(strip=False, request_id=request_id)  # nothing of the caller's stream is ever cut
        self.counts: dict[str, Any] = {}  # the usage fields seen so far, the latest of each
        self.deltas = 0  # message_delta events that carried usage

    def finish(self) -> bytes:
        """At the end of the stream: a last event left without its blank line, terminated."""
        tail = self.splitter.take_tail()
        if tail and _STOP in tail:
            self._read(tail)
            return tail + b"\n\n"
        return tail

    def _read(self, event: bytes) -> bool:
        if _USAGE not in event and _STOP not in event:
            return False
        try:
            payload = orjson.loads(event_data(event))
        except orjson.JSONDecodeError:
            return False
        what = payload.get("type") if isinstance(payload, dict) else None
        if what == "message_stop":
            self.done = True
        elif what == "message_start" and isinstance(payload.get("message"), dict):
            self._count(payload["message"].get("usage"), delta=False)
        elif what == "message_delta":
            self._count(payload.get("usage"), delta=True)
        return False

    def _count(self, counts: Any, *, delta: bool) -> None:
        if not isinstance(counts, dict):
            return
        self.counts.update((name, value) for name, value in counts.items() if value is not None)
        self.deltas += delta
        usage = usage_of(self.counts) if self.deltas else None
        if usage is not None:
            self.usage = usage  # cumulative counts: the latest is the whole

    @staticmethod
    def _has_text(event: bytes) -> bool:
        return _TEXT[0] in event or _TEXT[1] in event or _TEXT[2] in event or _TEXT[3] in event

    @staticmethod
    def _event_texts(events: Iterable[bytes]) -> list[str]:
        texts: list[str] = []
        for event in events:
            try:
                payload = orjson.loads(event_data(event))
            except orjson.JSONDecodeError:
                continue
            if isinstance(payload, dict):
                texts += block_texts(payload.get("delta") or payload.get("content_block"))
        return texts
