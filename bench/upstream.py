"""A fake OpenAI upstream fast enough not to be what a benchmark measures: a bare asyncio protocol
answering every POST with a canned chat completion, or a canned SSE stream when the body asks for
`"stream": true` (with the usage chunk when it asks for `include_usage`).

    python bench/upstream.py PORT
"""

from __future__ import annotations

import asyncio
import sys

import orjson

USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
PIECES = ["Hello", " from", " the", " bench", "!"]
_JSON = orjson.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(PIECES), "refusal": None},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": USAGE,
})  # fmt: skip


def _stream(include_usage: bool) -> bytes:
    def event(choices: list[object], usage: object = None) -> bytes:
        chunk: dict[str, object] = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
                                    "model": "bench", "choices": choices}  # fmt: skip
        if include_usage:
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    events = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    events += [event([{"index": 0, "delta": {"content": p}, "finish_reason": None}]) for p in PIECES]
    events.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if include_usage:
        events.append(event([], USAGE))
    return b"".join([*events, b"data: [DONE]\n\n"])


def _response(content_type: bytes, body: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type + b"\r\ncontent-length: " + str(len(body)).encode()
    return head + b"\r\n\r\n" + body


ANSWERS = {
    (False, False): _response(b"application/json", _JSON),
    (False, True): _response(b"application/json", _JSON),
    (True, False): _response(b"text/event-stream", _stream(False)),
    (True, True): _response(b"text/event-stream", _stream(True)),
}


class Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            line_end = head.find(b"\r\n", at)
            length = int(head[at + 15 : line_end if line_end > 0 else None]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            stream = b'"stream":true' in body or b'"stream": true' in body
            usage = b'"include_usage":true' in body or b'"include_usage": true' in body
            assert self.transport is not None
            self.transport.write(ANSWERS[(stream, usage)])


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Upstream, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
