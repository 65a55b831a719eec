"""The `echo` transport, the built-in channel: answered inside the process, so the shipped config works offline.

It replies with the last user message. Its tokens are whitespace-delimited words (a word with its
trailing space is one token): the counts are real in that they match exactly what it sends, and a
streamed reply is one chunk per token, like a model's. On `/embeddings` it answers deterministic
vectors (vectors.py), each string input counted in the same tokens, each token-id input by its length.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import orjson

from tokenbridge.errors import UpstreamError
from tokenbridge.settings import Channel
from tokenbridge.upstream.vectors import embeddings_answer

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


class EchoTransport:
    """Reads the request from the bytes the proxy built, like any upstream; holds nothing."""

    native_completions: ClassVar[bool] = False  # it answers chat only: a completions request reaches it as chat
    native_messages: ClassVar[bool] = False  # nor Messages: a /v1/messages request reaches it as chat
    native_responses: ClassVar[bool] = False  # ... and so does a /v1/responses request

    def __init__(self, *, pool_limit: int) -> None:
        """No pool: nothing leaves the process."""

    async def start(self) -> None:
        """Nothing to open."""

    def forget_channels(self) -> None:
        """Nothing prepared per channel."""

    async def close(self) -> None:
        """Nothing to release."""

    async def open(
        self, channel: Channel, path: str, body: bytes, *, stream: bool = True, headers: Mapping[str, str] | None = None
    ) -> EchoResponse | EchoAnswer:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"channel {channel.name!r} (echo) got a body that is not JSON") from exc
        if not isinstance(request, dict):
            raise UpstreamError(f"channel {channel.name!r} (echo) got a body that is not a JSON object")
        if path == "/embeddings":  # vectors.py; up to MAX_VALUES hashes and their JSON: off the event loop
            status, answer = await asyncio.to_thread(embeddings_answer, request, count=lambda text: len(tokens(text)))
            return EchoAnswer(status, answer)
        return EchoResponse(request)


class EchoAnswer:
    """A whole JSON answer made in advance (an embedding, or the echo's refusal of one); see client.UpstreamResponse."""

    media_type = "application/json"
    content_type = b"application/json"
    retry_after: str | None = None

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.content_length: int | None = len(body)
        self._body = body

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._body

    async def read_whole(self, limit: int) -> bytes | None:
        return self._body if len(self._body) <= limit else None

    async def peek(self) -> str:
        """Nothing to say: the answer is whole and the echo's own."""
        return ""

    async def rebuild_error(self) -> None:
        """Nothing to rebuild: the echo's refusal carries no secret."""

    def close(self) -> None:
        """Nothing to release."""


class EchoResponse:
    """An answer like an upstream's (see client.UpstreamResponse): always a 200, never a Retry-After."""

    status = 200
    content_length: int | None = None  # streamed or not, the echo's length is not announced
    retry_after: str | None = None

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
        self.media_type = "text/event-stream" if self._stream else "application/json"
        self.content_type = self.media_type.encode()

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

    async def read_whole(self, limit: int) -> bytes | None:
        """A JSON answer's body (it is small: the caller's own words); None for a stream, as for any upstream's."""
        if self._stream:
            return None
        body = orjson.dumps(self._completion())
        return body if len(body) <= limit else None

    async def peek(self) -> str:
        """Nothing to say: the echo never fails."""
        return ""

    async def rebuild_error(self) -> None:
        """Nothing to rebuild: the echo never answers an error."""

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
