"""The caller's TCP connection: uvicorn's HTTP/1.1 protocols with two changes made once per connection.

1. TCP_NODELAY. asyncio sets it only on sockets created with proto=IPPROTO_TCP, and the listening
   socket uvicorn binds itself for `--workers N` has proto 0: measured here, every answer after the
   first on a keep-alive connection then took ~44 ms instead of ~2 ms.
2. Writes made in one pass of the event loop leave in one system call. uvicorn writes a response's
   head as soon as `http.response.start` is sent and its body separately, and a chunked body's end
   marker separately again: two or three writes (and packets) where one does. Nothing waits on a
   timer: the batch goes out in the loop's next pass (after at most one poll that does not block,
   since a callback is ready), so a stream's events still leave as they arrive.
3. Limits (issue 11, item 12: idle sockets exhausted the file descriptors, unfinished 16 MB heads took
   the memory, slowloris was never cut). A connection over `[server] max_connections` is answered
   503 and closed as it is accepted, before it holds anything; a request head must be whole within
   `header_timeout` of the connection opening (or of its first byte, on a kept-alive connection) and
   stay under `max_header_bytes`, else 408 / 431 and the connection is closed; a connection that
   never said anything is just closed. Each limit that bites is logged. (The body's deadline is the
   body stage's: `read_body`.)
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import resource
import socket
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from tokenbridge.errors import GatewayError, RequestHeaderTooLarge, RequestTimeout, TooManyConnections
from tokenbridge.logs import peer
from tokenbridge.settings import ServerSettings

log = logging.getLogger("tokenbridge")
_DEFAULTS = ServerSettings()
SPARE_FDS = 64  # file descriptors kept, beyond the upstream connections, for the database, logs, the listener


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


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one caller connection may take; from `[server]` (see `uvicorn_options`)."""

    max_connections: int = _DEFAULTS.max_connections
    header_timeout_s: float = _DEFAULTS.header_timeout_s
    max_header_bytes: int = _DEFAULTS.max_header_bytes


def refusal(error: GatewayError) -> bytes:
    """A whole HTTP/1.1 response for `error` that closes the connection, written by the protocol itself
    (no request reached the app, so the intake stage cannot render it)."""
    body = error.body()
    head = f"HTTP/1.1 {error.status} {error.code}\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode() + body


def admit(protocol: Any, limits: ConnectionLimits) -> bool:
    """False (the connection answered 503 and closed) when it is one over `max_connections`;
    uvicorn's `connection_made` has already counted it in `protocol.connections`."""
    if len(protocol.connections) <= limits.max_connections:
        return True
    log.warning(
        "refused a connection from %s: %d open, max_connections = %d",
        peer(protocol.client), len(protocol.connections) - 1, limits.max_connections,
    )  # fmt: skip
    message = f"The server has {limits.max_connections} connections open, its limit; retry shortly."
    protocol.transport.write(refusal(TooManyConnections(message)))
    protocol.transport.close()
    return False


class CallerH11Protocol(H11Protocol):
    """uvicorn's h11 protocol on a caller connection prepared as above. Only the connection cap is
    added: h11 bounds a head by uvicorn's `h11_max_incomplete_event_size` (the head timeout is
    httptools' only, the protocol used whenever httptools is installed, as it is a dependency)."""

    def __init__(self, *args: Any, limits: ConnectionLimits = ConnectionLimits(), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_prepare(transport))
        admit(self, self.limits)


HTTP_PROTOCOL: type[asyncio.Protocol] = CallerH11Protocol
if importlib.util.find_spec("httptools") is not None:  # the faster parser, when installed (it is a dependency)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class CallerHttpToolsProtocol(HttpToolsProtocol):
        """The same on httptools, with the head's limits (module level: `--workers` pickles the class by name).

        `in_head` is true while the connection waits for, or reads, a request head: from the
        connection opening, and again once an answer is complete with no pipelined request queued.
        The head's bytes are counted as they arrive (httptools buffers an unfinished header itself,
        so counting what reaches `on_header` would not bound the memory); the timer runs from the
        opening, or from a kept-alive connection's next first byte (uvicorn's keep-alive timeout
        covers the silence before it), and stops when the head is whole.
        """

        def __init__(self, *args: Any, limits: ConnectionLimits = ConnectionLimits(), **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.limits = limits
            self.in_head = True
            self.head_bytes = 0
            self.head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(_prepare(transport))
            if admit(self, self.limits):
                self.head_timer = self.loop.call_later(self.limits.header_timeout_s, self.head_timed_out)

        def connection_lost(self, exc: Exception | None) -> None:
            self.stop_head_timer()
            super().connection_lost(exc)

        def stop_head_timer(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def data_received(self, data: bytes) -> None:
            if self.in_head:
                self.head_bytes += len(data)
            super().data_received(data)
            if self.in_head and self.head_bytes > self.limits.max_header_bytes and not self.transport.is_closing():
                limit = self.limits.max_header_bytes
                log.warning("closed a connection from %s: request head over %d bytes", peer(self.client), limit)
                self.refuse(RequestHeaderTooLarge(f"The request head is over the limit of {limit} bytes."))

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self.head_timer is None:
                self.head_timer = self.loop.call_later(self.limits.header_timeout_s, self.head_timed_out)

        def on_headers_complete(self) -> None:
            self.in_head = False
            self.head_bytes = 0
            self.stop_head_timer()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.timeout_keep_alive_task is not None:  # idle, waiting for the next request's head
                self.in_head = True

        def head_timed_out(self) -> None:
            self.head_timer = None
            if self.transport.is_closing():
                return
            seconds = self.limits.header_timeout_s
            if not self.head_bytes:
                log.warning("closed an idle connection from %s: no request within %gs", peer(self.client), seconds)
                self.transport.close()
                return
            log.warning("closed a connection from %s: request head not complete within %gs", peer(self.client), seconds)
            self.refuse(RequestTimeout(f"The request head was not complete within {seconds:g}s."))

        def refuse(self, error: GatewayError) -> None:
            self.stop_head_timer()
            self.transport.write(refusal(error))
            self.transport.close()

    HTTP_PROTOCOL = CallerHttpToolsProtocol


def fit_open_files(wanted: int, upstream: int) -> int:
    """`wanted` connections, or fewer when the open-file limit cannot take them, `upstream` connections
    (`max_upstream_connections`) and the spare fds.

    The soft limit is raised towards the hard one first (as servers commonly do at start); what is
    still missing lowers the cap, with a warning, so callers over it get a 503 instead of an
    `accept()` failing with EMFILE, which refuses everyone, silently.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    spare = upstream + SPARE_FDS
    needed = wanted + spare
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    fitted = max(soft - spare, soft // 2)
    log.warning("max_connections lowered from %d to %d: the open-file limit is %d", wanted, fitted, soft)
    return fitted


def uvicorn_options(server: ServerSettings) -> dict[str, Any]:
    """The connection's options for `uvicorn.run`, once at start (`--workers N`: each worker gets them).

    The protocol is a partial of the module-level class: picklable by name for the workers.
    """
    limits = ConnectionLimits(
        max_connections=fit_open_files(server.max_connections, server.max_upstream_connections),
        header_timeout_s=server.header_timeout_s,
        max_header_bytes=server.max_header_bytes,
    )
    return {
        "http": functools.partial(HTTP_PROTOCOL, limits=limits),
        "timeout_keep_alive": server.keepalive_timeout_s,
        "h11_max_incomplete_event_size": server.max_header_bytes,
        "proxy_headers": False,  # X-Forwarded-* only from [accounts] trusted_proxies (clientaddr.py)
    }
