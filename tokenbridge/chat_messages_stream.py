"""Anthropic's Messages SSE -> chat completion chunks, event by event (the stream half of chat_messages.py).

One translator per stream, fed one whole SSE event at a time. `message_start` gives the role
chunk (and the id, model and input usage); text deltas become content chunks; a `tool_use` block
becomes a tool call (its id and name when it opens, its `input_json_delta`s as argument pieces,
numbered by tool call, not by content block); `message_delta` gives the finish chunk; at
`message_stop` come the usage chunk (only if the caller asked, `stream_options.include_usage`) and
`data: [DONE]`. `ping`s, block stops and thinking blocks have nothing to say to a chat caller.
Anthropic's `error` event (overloaded mid-answer, say) raises UpstreamError with its message
(masked): the gateway then ends the caller's stream with its one error event, as for any upstream
that breaks mid-stream, and no `[DONE]`. An event that is not Messages JSON is passed on as it is,
for the meter to judge.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from tokenbridge.chat_messages import chat_id, chat_usage, finish_reason
from tokenbridge.upstream.redact import stream_failure
from tokenbridge.upstream.sse import event_data

DONE = b"data: [DONE]\n\n"


class ChatEvents:
    """Translates one Messages stream into the chat stream its caller asked for."""

    __slots__ = ("include_usage", "secret", "envelope", "usage", "tools", "finish")

    def __init__(self, *, include_usage: bool, secret: str = "") -> None:
        self.include_usage = include_usage
        self.secret = secret  # the channel's, masked out of an upstream error message
        self.envelope: dict[str, Any] = {
            "id": "chatcmpl-",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "",
        }
        self.usage: dict[str, Any] = {}  # Anthropic's counts so far: message_start's, updated by message_delta's
        self.tools: dict[int, int] = {}  # content block index -> tool call index
        self.finish: str | None = None

    def translate(self, event: bytes) -> bytes:
        data = event_data(event)
        try:
            payload = orjson.loads(data) if data else None
        except orjson.JSONDecodeError:
            return event
        if not isinstance(payload, dict):
            return event
        handler = _HANDLERS.get(payload.get("type"))
        return b"" if handler is None else handler(self, payload)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {**self.envelope, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _start(self, payload: dict[str, Any]) -> bytes:
        message = payload.get("message")
        message = message if isinstance(message, dict) else {}
        model = message.get("model")
        self.envelope.update(
            id=chat_id(message.get("id")), created=int(time.time()), model=model if isinstance(model, str) else ""
        )
        if isinstance(message.get("usage"), dict):
            self.usage.update(message["usage"])
        return self._chunk({"role": "assistant", "content": ""})

    def _block_start(self, payload: dict[str, Any]) -> bytes:
        block = payload.get("content_block")
        index = payload.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            return b""
        if block.get("type") == "tool_use":
            self.tools[index] = number = len(self.tools)
            call = {
                "id": block.get("id", ""),
                "type": "function",
                "function": {"name": block.get("name", ""), "arguments": ""},
            }
            return self._chunk({"tool_calls": [{"index": number, **call}]})
        if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
            return self._chunk({"content": block["text"]})
        return b""

    def _block_delta(self, payload: dict[str, Any]) -> bytes:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            return b""
        delta_type = delta.get("type")
        if delta_type == "text_delta" and isinstance(delta.get("text"), str):
            return self._chunk({"content": delta["text"]})
        number = self.tools.get(payload.get("index"))  # type: ignore[arg-type]
        piece = delta.get("partial_json")
        if delta_type == "input_json_delta" and number is not None and isinstance(piece, str) and piece:
            return self._chunk({"tool_calls": [{"index": number, "function": {"arguments": piece}}]})
        return b""  # thinking, signatures, an empty first piece of a tool's input

    def _message_delta(self, payload: dict[str, Any]) -> bytes:
        if isinstance(payload.get("usage"), dict):
            self.usage.update({k: v for k, v in payload["usage"].items() if v is not None})  # cumulative counts
        delta = payload.get("delta")
        self.finish = finish_reason(delta.get("stop_reason") if isinstance(delta, dict) else None)
        return self._chunk({}, self.finish)

    def _stop(self, payload: dict[str, Any]) -> bytes:
        out = b"" if self.finish is not None else self._chunk({}, "stop")
        usage = chat_usage(self.usage)
        if self.include_usage and usage is not None:
            out += b"data: " + orjson.dumps({**self.envelope, "choices": [], "usage": usage}) + b"\n\n"
        return out + DONE

    def _error(self, payload: dict[str, Any]) -> bytes:
        raise stream_failure(payload, self.secret)


_HANDLERS = {
    "message_start": ChatEvents._start,
    "content_block_start": ChatEvents._block_start,
    "content_block_delta": ChatEvents._block_delta,
    "message_delta": ChatEvents._message_delta,
    "message_stop": ChatEvents._stop,
    "error": ChatEvents._error,
}
