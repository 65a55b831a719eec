"""The built-in `echo` channel: answered inside the process, so the shipped config works offline.

It replies with the last user message. Its tokens are whitespace-delimited words (a word with its
trailing space is one token): the counts are real in that they match exactly what it sends, and a
streamed reply is one chunk per token, like a model's.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

_TOKEN = re.compile(r"\s*\S+\s*|\s+")
MESSAGE_OVERHEAD_TOKENS = 3  # role and framing, as chat models count them


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones (a text that is not a string is none)
        texts = (p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text")
        return "".join(text for text in texts if isinstance(text, str))
    return ""


def prompt_tokens(messages: list[Any]) -> int:
    return sum(MESSAGE_OVERHEAD_TOKENS + len(tokens(_text(m.get("content")))) for m in messages if isinstance(m, dict))


class EchoResponse:
    """Quacks like an upstream response (status, content_type, chunks(), close())."""

    status = 200
    content_length: int | None = None  # streamed or not, the echo's length is not announced

    def __init__(self, body: dict[str, Any]) -> None:
        messages = body.get("messages") or []
        last_user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), {})
        pieces = tokens(_text(last_user.get("content")))
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        self._finish = "stop"
        if isinstance(limit, int) and limit < len(pieces):
            pieces, self._finish = pieces[:limit], "length"
        self._pieces = pieces
        self._model = str(body.get("model", "echo"))
        self._stream = body.get("stream") is True
        options = body.get("stream_options")
        self._include_usage = isinstance(options, dict) and options.get("include_usage") is True
        self._usage = {
            "prompt_tokens": prompt_tokens(messages),
            "completion_tokens": len(pieces),
            "total_tokens": prompt_tokens(messages) + len(pieces),
        }
        self._id = "chatcmpl-" + uuid.uuid4().hex
        self._created = int(time.time())
        self.content_type = b"text/event-stream" if self._stream else b"application/json"

    async def chunks(self) -> AsyncIterator[bytes]:
        if not self._stream:
            yield orjson.dumps(self._completion())
            return
        yield self._event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for piece in self._pieces:
            yield self._event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        yield self._event([{"index": 0, "delta": {}, "finish_reason": self._finish}])
        if self._include_usage:
            yield self._event([], usage=self._usage)
        yield b"data: [DONE]\n\n"

    def close(self) -> None:
        """Nothing to release."""

    def _completion(self) -> dict[str, Any]:
        message = {"role": "assistant", "content": "".join(self._pieces), "refusal": None}
        return {
            "id": self._id,
            "object": "chat.completion",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": self._finish}],
            "usage": self._usage,
        }

    def _event(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if self._include_usage:
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"
