"""A raw HTTP/1.1 upstream that can send bytes past a response's Content-Length (uvicorn refuses to).

Each request on a kept-alive connection gets a chat completion saying `OVERLONG_TEXT`. `spoil(extra)`
writes `extra` on the connection that answered last, after its response went out: what an
upstream sends past its Content-Length, as it reaches a connection resting in the gateway's pool.
`connections` counts the connections the gateway opened.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import orjson

OVERLONG_TEXT = "answered on a clean connection"
_BODY = orjson.dumps(
    {
        "id": "chatcmpl-overlong",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "overlong",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": OVERLONG_TEXT}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    }
)
_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(_BODY)


class OverlongUpstream:
    def __init__(self) -> None:
        self.connections = 0
        self._last: asyncio.StreamWriter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = next(
                    int(v) for k, _, v in (line.partition(":") for line in lines) if k.lower() == "content-length"
                )
                await reader.readexactly(length)
                writer.write(_HEAD + _BODY)
                await writer.drain()
                self._last = writer
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def spoil(self, extra: bytes) -> None:
        """Write `extra` on the connection that answered last (from the test thread), and wait until it is sent."""
        assert self._loop is not None

        async def write() -> None:
            assert self._last is not None, "no connection has answered yet"
            self._last.write(extra)
            await self._last.drain()

        asyncio.run_coroutine_threadsafe(write(), self._loop).result(10)


@contextmanager
def serve_overlong() -> Iterator[tuple[OverlongUpstream, str]]:
    """The raw upstream on a loopback port, in a thread: (it, its base URL)."""
    fake = OverlongUpstream()
    ready = threading.Event()
    stop: list[asyncio.Event] = []
    port: list[int] = []

    async def main() -> None:
        fake._loop = asyncio.get_running_loop()
        stop.append(asyncio.Event())
        server = await asyncio.start_server(fake._serve, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        async with server:
            await stop[0].wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="overlong-upstream", daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield fake, f"http://127.0.0.1:{port[0]}/v1"
    finally:
        assert fake._loop is not None
        fake._loop.call_soon_threadsafe(stop[0].set)
        thread.join(10)
