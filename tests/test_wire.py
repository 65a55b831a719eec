"""The caller's connection: TCP_NODELAY, and writes of one event-loop pass leaving together."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from tokenbridge.wire import CoalescingTransport, set_nodelay


class Transport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None


def test_serve_sets_nodelay_on_connections_of_a_proto_0_listener() -> None:
    # The listener uvicorn binds for --workers N has proto 0, so asyncio leaves Nagle on.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname()) as _client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
                set_nodelay(Transport(accepted))  # type: ignore[arg-type]
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


class Recording:
    """A transport that records each call the coalescing one makes on it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def writelines(self, lines: list[bytes]) -> None:
        self.calls.append(("writelines", list(lines)))

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None


async def next_pass() -> None:
    """Wait until the loop has run the callbacks scheduled so far (the flush among them): call_soon is FIFO."""
    loop = asyncio.get_running_loop()
    reached: asyncio.Future[None] = loop.create_future()
    loop.call_soon(reached.set_result, None)
    await reached


async def test_writes_of_one_pass_leave_in_one_call_in_order() -> None:
    real = Recording()
    wire = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    wire.write(b"HTTP/1.1 200 OK\r\n\r\n")
    wire.write(b"")
    wire.write(b"body")
    assert real.calls == []  # nothing left yet: the pass is not over
    await next_pass()
    assert real.calls == [("writelines", [b"HTTP/1.1 200 OK\r\n\r\n", b"body"])]
    wire.write(b"next event")
    await next_pass()
    assert real.calls[-1] == ("write", b"next event")  # a pass with one write hands it over as is


async def test_close_sends_what_is_pending_first_and_later_writes_are_dropped() -> None:
    real = Recording()
    wire = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    wire.write(b"last answer")
    wire.close()
    assert real.calls == [("write", b"last answer"), ("close", None)]
    wire.write(b"too late")
    await next_pass()
    assert real.calls == [("write", b"last answer"), ("close", None)]


async def test_everything_else_is_the_real_transport() -> None:
    real = Recording()
    wire = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    assert wire.get_extra_info("peername") == ("127.0.0.1", 1)
    assert wire.is_closing() is False
