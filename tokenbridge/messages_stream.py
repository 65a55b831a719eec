"""A chat stream as Anthropic's Messages event sequence, one chat event at a time (the shape stage runs it).

    message_start
    content_block_start / content_block_delta (text_delta | input_json_delta | thinking_delta) ... / content_block_stop
    ...one block per run of text or of reasoning and per tool call, in the order they come...
    message_delta (stop_reason, usage)
    message_stop

The chat request asked for usage (messages.chat_request), so the usage chunk comes before
`[DONE]`; `message_delta` is sent at `[DONE]` with it, then `message_stop`. A chat stream that
ends without `[DONE]` gets no `message_stop` here: the meter ends it with Anthropic's `error`
event instead. Only the first choice is read (a Messages answer has one). `message_start` cannot
know the prompt's size yet: its usage says 0, and `message_delta` carries the real counts (SDKs
take them from there). A chat server's reasoning (`reasoning_content`, `reasoning`) comes as
thinking blocks with an empty signature: nothing can sign them, and sent back they are dropped.
"""

from __future__ import annotations

from typing import Any

import orjson

from tokenbridge.messages import STOP_REASONS, anthropic_usage, first_choice, message_id, object_of
from tokenbridge.upstream.redact import stream_failure
from tokenbridge.upstream.sse import event_data

_DONE = b"[DONE]"


def sse(name: str, payload: dict[str, Any]) -> bytes:
    """One Anthropic SSE event: its name on an `event:` line, its JSON (with the same `type`) on `data:`."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **payload}) + b"\n\n"


def error_event(error_type: str, message: str) -> bytes:
    return sse("error", {"error": {"type": error_type, "message": message}})


class MessagesEvents:
    """The state of one stream: what was started, the open block, the stop reason and usage seen."""

    __slots__ = ("model", "secret", "started", "blocks", "open", "tools", "stop_reason", "usage")

    def __init__(self, model: str = "", *, secret: str = "") -> None:
        self.model = model  # the caller's model name, until the upstream names its own
        self.secret = secret  # the channel's, masked out of an upstream error's message
        self.started = False
        self.blocks = 0  # blocks started so far; the next one's index
        self.open: str | None = None  # "text", "thinking" or "tool:<chat tool index>" while a block is open
        self.tools: dict[int, int] = {}  # chat tool-call index -> its block's index
        self.stop_reason = "end_turn"
        self.usage: Any = None

    def translate(self, event: bytes) -> bytes:
        data = event_data(event)
        if not data:
            return b""  # a comment or keep-alive: Anthropic's clients have ping events for that
        if data == _DONE:
            return self._start({}) + self._close() + self._finish()
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(chunk, dict):
            return b""
        if "error" in chunk:  # ends the stream with the route's one error event, after the settle
            raise stream_failure(chunk, self.secret)
        out = self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choice = first_choice(chunk)
        delta = object_of(choice.get("delta"))
        thought = delta.get("reasoning_content") or delta.get("reasoning")  # DeepSeek's, vLLM's, OpenRouter's
        if isinstance(thought, str) and thought:
            out += self._block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta({"type": "thinking_delta", "thinking": thought})
        text = delta.get("content")
        if isinstance(text, str) and text:
            out += self._block("text", {"type": "text", "text": ""})
            out += self._delta({"type": "text_delta", "text": text})
        for call in delta.get("tool_calls") or ():
            out += self._tool(call) if isinstance(call, dict) else b""
        finish = choice.get("finish_reason")
        if isinstance(finish, str):
            self.stop_reason = STOP_REASONS.get(finish, "end_turn")
            out += self._close()
        return out

    def _start(self, chunk: dict[str, Any]) -> bytes:
        if self.started:
            return b""
        self.started = True
        model = chunk.get("model") if isinstance(chunk.get("model"), str) else self.model
        message: dict[str, Any] = {
            "id": message_id(chunk.get("id")), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }  # fmt: skip
        return sse("message_start", {"message": message})

    def _block(self, which: str, block: dict[str, Any]) -> bytes:
        """Start a block unless `which` is the open one (closing the one that is)."""
        if self.open == which:
            return b""
        out = self._close()
        self.open = which
        self.blocks += 1
        return out + sse("content_block_start", {"index": self.blocks - 1, "content_block": block})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return sse("content_block_delta", {"index": self.blocks - 1, "delta": delta})

    def _tool(self, call: dict[str, Any]) -> bytes:
        index = call.get("index", 0)
        function = object_of(call.get("function"))
        out = b""
        if index not in self.tools:
            block = {"type": "tool_use", "id": str(call.get("id") or f"toolu_{index}"),
                     "name": str(function.get("name") or ""), "input": {}}  # fmt: skip
            out += self._block(f"tool:{index}", block)
            self.tools[index] = self.blocks - 1
        elif self.open != f"tool:{index}":
            return b""  # a piece of a call whose block was closed: Anthropic's blocks do not reopen
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out += self._delta({"type": "input_json_delta", "partial_json": arguments})
        return out

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return sse("content_block_stop", {"index": self.blocks - 1})

    def _finish(self) -> bytes:
        delta = {
            "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
            "usage": anthropic_usage(self.usage),
        }
        return sse("message_delta", delta) + sse("message_stop", {})
