"""Run an ASGI app under real uvicorn on a loopback port, in a thread (httpx's tests do the same)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def bound_socket() -> socket.socket:
    """A listening loopback socket on a free port: clients may connect before the server loop runs."""
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only for such sockets.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


def free_port() -> int:
    """A port free right now, for a server process that binds it itself (as a user's would)."""
    with bound_socket() as sock:
        return int(sock.getsockname()[1])


@contextmanager
def serve_in_thread(app: Any, http: Any = "auto") -> Iterator[str]:
    """Yield the base URL while `app` is served; stop and join on exit. `http`: uvicorn's protocol
    (the gateway's tests pass the one `tokenbridge serve` uses)."""
    sock = bound_socket()
    started = threading.Event()
    failure: list[BaseException] = []

    async def signalling_app(scope: Any, receive: Any, send: Any) -> None:
        """The app, telling the test thread when its lifespan startup is done (the socket already listens)."""

        async def send_and_signal(message: Any) -> None:
            await send(message)
            if message["type"] in ("lifespan.startup.complete", "lifespan.startup.failed"):
                started.set()

        await app(scope, receive, send_and_signal if scope["type"] == "lifespan" else send)

    config = uvicorn.Config(
        signalling_app, lifespan="on", log_level="warning", timeout_graceful_shutdown=5, http=http, proxy_headers=False
    )
    server = uvicorn.Server(config)

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=run, name="uvicorn-test", daemon=True)
    thread.start()
    started.wait(30)
    if failure or not thread.is_alive():
        raise RuntimeError(f"server did not start: {failure!r}")
    host, port = sock.getsockname()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
