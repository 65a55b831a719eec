"""The caller's TCP connection: uvicorn's HTTP/1.1 protocols with two changes made once per connection.

1. TCP_NODELAY. asyncio sets it only on sockets created with proto=IPPROTO_TCP, and the listening
   socket uvicorn binds itself for `--workers N` has proto 0: measured here, every answer after the
   first on a keep-alive connection then took ~44 ms instead of ~2 ms.
2. Writes made in one pass of the event loop leave in one system call. uvicorn writes a response's
   head as soon as `http.response.start` is sent and its body separately, and a chunked body's end
   marker separately again: two or three writes (and packets) where one does. Nothing waits on a
   timer: the batch goes out in the loop's next pass (after at most one poll that does not block,
   since a callback is ready), so a stream's events still leave as they arrive.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY on a caller's connection, so a small write (an SSE event) leaves at once instead
    of waiting out the caller's delayed ACK (~40 ms on Linux)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class CoalescingTransport:
    """A transport whose writes within one event-loop pass are handed to the real one together.

    Everything but write/writelines/close/write_eof is the real transport's (flow control, extra
    info, is_closing). The pending list holds at most what one pass wrote: it is flushed by a
    callback scheduled with the first write of the pass.
    """

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if self._transport.is_closing():
            return  # the connection is gone: what was pending has nobody to reach
        if len(pending) == 1:
            self._transport.write(pending[0])
        else:
            self._transport.writelines(pending)

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()  # a response written just before close (Connection: close) still leaves
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _prepare(transport: asyncio.Transport) -> Any:
    set_nodelay(transport)
    return CoalescingTransport(transport, asyncio.get_running_loop())


class CallerH11Protocol(H11Protocol):
    """uvicorn's h11 protocol on a caller connection prepared as above."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_prepare(transport))


HTTP_PROTOCOL: type[asyncio.Protocol] = CallerH11Protocol
if importlib.util.find_spec("httptools") is not None:  # the faster parser, when installed (it is a dependency)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class CallerHttpToolsProtocol(HttpToolsProtocol):
        """The same on httptools (module level: `--workers` pickles the class by name)."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(_prepare(transport))

    HTTP_PROTOCOL = CallerHttpToolsProtocol
