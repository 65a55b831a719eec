"""Connection limits of `tokenbridge serve` (issue 11, item 12), over real sockets against the real process.

Each limit is set small in the config so it bites at once; every test then checks that the server
closes the offending connection, says so in its log, and still serves a caller who behaves.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.test_first_run import SHIPPED_CONFIG, Served
from tests.fakes.server import free_port

LIMITS = """[server]
header_timeout = {header_timeout}
keepalive_timeout = 1
body_timeout = 1
max_header_bytes = 4096
max_connections = {max_connections}
"""
CLOSE_GUARD_S = 60  # a generous cap on waiting for the server to close: no timing is asserted


def serve(tmp: Path, *, header_timeout: float = 1, max_connections: int = 100) -> tuple[Served, str]:
    config = tmp / "config.toml"
    limits = LIMITS.format(header_timeout=header_timeout, max_connections=max_connections)
    config.write_text(SHIPPED_CONFIG.read_text().replace("[server]\n", limits, 1))  # its echo channel, small limits
    port = free_port()
    served = Served(config, port)
    try:
        served.until(r"Uvicorn running on")
    except BaseException:
        served.stop()
        raise
    return served, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    served, address = serve(tmp_path_factory.mktemp("limits"))
    try:
        yield served, address
    finally:
        served.stop()


def connect(address: str) -> socket.socket:
    host, port = address.split(":")
    sock = socket.create_connection((host, int(port)), timeout=CLOSE_GUARD_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the guard runs out: a failure)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def still_serves(address: str) -> None:
    assert httpx.get(f"http://{address}/healthz", timeout=CLOSE_GUARD_S).status_code == 200


def error_of(answer: bytes) -> dict[str, object]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    error = orjson.loads(body)["error"]
    assert isinstance(error, dict)
    return error


def test_serve_closes_a_connection_that_never_speaks(limited: tuple[Served, str]) -> None:
    served, address = limited
    with connect(address) as silent:
        assert read_until_closed(silent) == b""  # closed, nothing said: it never asked anything
    still_serves(address)
    served.until(r"closed an idle connection.*no request within 1s")


def test_serve_closes_a_keep_alive_connection_left_idle(limited: tuple[Served, str]) -> None:
    _, address = limited
    with connect(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status":"ok"}')


def test_serve_cuts_a_head_sent_slowly(limited: tuple[Served, str]) -> None:
    served, address = limited
    with connect(address) as slow:
        slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        slow.settimeout(0.2)  # between header lines: the server must cut it though bytes keep coming
        answer, ended = b"", False
        for i in range(CLOSE_GUARD_S * 5):
            try:
                chunk = slow.recv(65536)
            except TimeoutError:
                slow.sendall(b"X-Slow-%d: yes\r\n" % i)
                continue
            except ConnectionResetError:  # closed with our last line unread: the 408 may be lost with it
                ended = True
                break
            answer += chunk
            if not chunk:
                ended = True
                break
        assert ended, "a head sent slowly was never cut"
    if answer:
        assert answer.startswith(b"HTTP/1.1 408")
        assert error_of(answer)["code"] == "request_timeout"
    still_serves(address)
    served.until(r"request head not complete within 1s")


def test_serve_refuses_a_head_over_max_header_bytes(limited: tuple[Served, str]) -> None:
    served, address = limited
    with connect(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192)  # never ends
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431")
    assert error_of(answer)["code"] == "request_header_too_large"
    still_serves(address)
    served.until(r"request head over 4096 bytes")


@pytest.mark.parametrize(
    "head, body",
    [
        (b"Transfer-Encoding: chunked\r\n", b'5\r\n{"a":\r\n'),  # a chunked body whose last chunk never comes
        (b"Content-Length: 1000\r\n", b'{"model": "echo-1"'),  # fewer bytes than announced
    ],
    ids=["chunked", "short"],
)
def test_serve_cuts_a_body_not_whole_within_body_timeout(limited: tuple[Served, str], head: bytes, body: bytes) -> None:
    served, address = limited
    with connect(address) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + head)
        sock.sendall(b"\r\n" + body)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408")
    error = error_of(answer)
    assert error["code"] == "request_timeout" and "1s" in str(error["message"])
    still_serves(address)
    served.until(r"request body not complete within 1s")


def test_serve_refuses_connections_over_max_connections(tmp_path: Path) -> None:
    served, address = serve(tmp_path, header_timeout=600, max_connections=3)
    try:
        held = [connect(address) for _ in range(3)]
        try:
            with connect(address) as extra:
                answer = read_until_closed(extra)
            assert answer.startswith(b"HTTP/1.1 503")
            assert error_of(answer)["code"] == "too_many_connections"
            held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_until_closed(held[0]).startswith(b"HTTP/1.1 200")  # those it holds are still served
        finally:
            for sock in held:
                sock.close()
        served.until(r"refused a connection.*max_connections = 3")
    finally:
        served.stop()
