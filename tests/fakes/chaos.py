"""A misbehaving upstream for the fuzz test: a raw asyncio TCP server on loopback.

It answers every request with the bytes of the current `Script`, written by hand, so it can break
HTTP itself in ways a real ASGI server refuses to: a Content-Length that says more or less than is
sent, a chunked body cut before its terminator, a head that comes late or never, a body that ends
with the connection. The test sets `ChaosUpstream.script` before each example; every request that
arrives meanwhile (each failover attempt too) gets that script.

| Script field   | meaning                                                                           |
| -------------- | --------------------------------------------------------------------------------- |
| status         | the status line's code                                                            |
| content_type   | the Content-Type header, or None for no header at all                             |
| pieces         | the body, written one piece at a time (TCP_NODELAY, a pause between pieces)       |
|                | `{AUTH}` in a piece is replaced by the Authorization header received (an echoing |
|                | upstream)                                                                          |
| framing        | "length": Content-Length; "chunked": one chunk per piece; "close": neither, the   |
|                | body ends with the connection                                                     |
| length_delta   | with "length": announce this many bytes more (> 0) or fewer (< 0) than are sent   |
| head_delay_s   | wait this long before the status line (a slow or missing first byte)              |
| stall_s        | wait this long after the first piece, if more follow (a stream that goes silent) |
| end            | "keep": the connection serves the next request; "close": closed after the body;  |
|                | "cut": closed at once, a chunked body without its terminator                     |

The last requests are kept in `seen` (path, headers, raw body) for the test to inspect.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

AUTH = b"{AUTH}"
PIECE_PAUSE_S = 0.001  # between pieces, so they tend to reach the gateway in reads of their own
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}


@dataclass(frozen=True)
class Script:
    status: int = 200
    content_type: bytes | None = b"application/json"
    pieces: tuple[bytes, ...] = ()
    framing: str = "length"
    length_delta: int = 0
    head_delay_s: float = 0.0
    stall_s: float = 0.0
    end: str = "keep"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ChaosUpstream:
    script: Script = field(default_factory=Script)
    seen: deque[Received] = field(default_factory=lambda: deque(maxlen=16))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection from the gateway: requests in, scripted answers out, until either side ends it."""
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while (request := await _read_request(reader)) is not None:
                self.seen.append(request)
                if not await _answer(self.script, request, writer):
                    break
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the gateway hung up, or sent what this fake does not parse: either way, done
        finally:
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Received | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # the gateway closed the connection between requests
    request_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Received(request_line.split(" ")[1], headers, body)


async def _answer(script: Script, request: Received, writer: asyncio.StreamWriter) -> bool:
    """Write the script's answer; True if the connection may serve another request."""
    auth = request.headers.get("authorization", "").encode("latin-1")
    pieces = [piece.replace(AUTH, auth) for piece in script.pieces]
    if script.head_delay_s:
        await asyncio.sleep(script.head_delay_s)
    head = [f"HTTP/1.1 {script.status} {REASONS.get(script.status, 'Whatever')}"]
    if script.content_type is not None:
        head.append("Content-Type: " + script.content_type.decode("latin-1"))
    if script.framing == "length":
        head.append(f"Content-Length: {max(0, sum(map(len, pieces)) + script.length_delta)}")
    elif script.framing == "chunked":
        head.append("Transfer-Encoding: chunked")
    if script.framing == "close" or script.end != "keep":
        head.append("Connection: close")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    for i, piece in enumerate(pieces):
        if piece:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if script.framing == "chunked" else piece)
            await writer.drain()
        if i < len(pieces) - 1:
            await asyncio.sleep(script.stall_s if i == 0 and script.stall_s else PIECE_PAUSE_S)
    if script.framing == "chunked" and script.end != "cut":
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    return script.end == "keep" and script.framing != "close"


@contextlib.contextmanager
def serve_chaos(chaos: ChaosUpstream) -> Iterator[str]:
    """Serve `chaos` on a loopback port in a thread of its own; yield its base URL."""
    loop = asyncio.new_event_loop()
    handlers: set[asyncio.Task[None]] = set()
    servers: list[asyncio.Server] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await chaos.handle(reader, writer)
        finally:
            handlers.discard(task)

    async def start() -> None:
        servers.append(await asyncio.start_server(serve, "127.0.0.1", 0))

    thread = threading.Thread(target=loop.run_forever, name="chaos-upstream", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    host, port = servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:

        async def stop() -> None:
            servers[0].close()
            for task in list(handlers):
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
