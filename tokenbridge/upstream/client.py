"""The one seam to upstreams: an aiohttp session opened in lifespan, with explicit timeouts and pool limits.

Why aiohttp and not httpx here: measured on this 2-core machine as a bare client at 50 concurrent,
httpx's pool collapsed to ~580 req/s against ~10,500 for aiohttp (encode/httpx#3215). The caller
never notices which client we use: bytes are passed through as they arrive either way.

Foreign exceptions are translated here, at the boundary: connection failures and broken streams
become `UpstreamError`, every kind of waiting too long `UpstreamTimeout`; each names the channel,
never its URL's secret or key.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from tokenbridge.errors import UpstreamError, UpstreamTimeout
from tokenbridge.settings import Channel
from tokenbridge.upstream.echo import EchoResponse

POOL_LIMIT = 1000  # open upstream connections at once, all channels
POOL_LIMIT_PER_HOST = 0  # 0 = no per-host cap beyond POOL_LIMIT
ERROR_BODY_PEEK_BYTES = 300  # how much of a failed upstream's body goes into the log
PEEK_TIMEOUT_S = 1.0  # reading it must not delay the failover to the next channel
# aiohttp warns (ResourceWarning) on a bytes body over 1 MiB, an error where warnings are errors; a
# BytesIO goes out in 64 KiB writes with the loop running in between, under the same Content-Length.
LARGE_BODY_BYTES = 1 << 20


class UpstreamResponse(Protocol):
    """What the proxy needs of an answer, from the network or from the echo channel."""

    status: int
    content_type: bytes
    content_length: int | None

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class HttpResponse:
    """An aiohttp response read chunk by chunk, translating its read errors."""

    def __init__(self, response: aiohttp.ClientResponse, channel: Channel) -> None:
        self._response = response
        self._channel = channel
        self.status = response.status
        self.content_type = response.headers.get("Content-Type", "application/json").encode("latin-1")
        self.content_length = response.content_length

    async def chunks(self) -> AsyncIterator[bytes]:
        name = self._channel.name
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise UpstreamTimeout(f"channel {name!r} went silent for over {self._channel.idle_timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"channel {name!r} broke off the response ({type(exc).__name__})") from exc

    async def peek(self) -> str:
        """The start of a failed response's body, for the log: briefly, and with the channel's secret masked."""
        try:
            async with asyncio.timeout(PEEK_TIMEOUT_S):
                data = await self._response.content.read(ERROR_BODY_PEEK_BYTES)
        except (aiohttp.ClientError, TimeoutError):
            return ""
        text = data.decode("utf-8", "replace")
        return text.replace(self._channel.api_key, "***") if self._channel.api_key else text

    def close(self) -> None:
        self._response.close()


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What a request to one channel needs that does not change between requests."""

    headers: dict[str, str]
    stream_timeout: aiohttp.ClientTimeout  # reads: the idle gap between chunks
    whole_timeout: aiohttp.ClientTimeout  # a non-stream answer: nothing arrives until it is all generated


def _prepare(channel: Channel) -> _Prepared:
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    if channel.api_key:
        headers["Authorization"] = f"Bearer {channel.api_key}"
    connect = channel.connect_timeout_s
    stream = aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=channel.idle_timeout_s)
    whole = aiohttp.ClientTimeout(
        total=None, connect=connect, sock_connect=connect, sock_read=channel.response_timeout_s
    )
    return _Prepared(headers, stream, whole)


class UpstreamClient:
    """Owns the connection pool; `open()` sends one request and returns once the headers are in."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._prepared: dict[Channel, _Prepared] = {}  # per channel of any config version; a few entries

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=POOL_LIMIT, limit_per_host=POOL_LIMIT_PER_HOST, ttl_dns_cache=300)
        # No cookies and no auto-decompression: nothing of one caller leaks into another's request, and
        # the bytes we pass on are the bytes the upstream sent (we ask for identity encoding below).
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
        )

    def forget_channels(self) -> None:
        """After a reload: prepared headers of channels no longer in the config are dropped."""
        self._prepared = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def open(
        self, channel: Channel, path: str, body: bytes | dict[str, object], *, stream: bool = True
    ) -> UpstreamResponse:
        """POST `body` to the channel. `body` is bytes for the network; echo takes the parsed dict.

        A stream's head must come within `first_byte_timeout` and its chunks within `idle_timeout` of
        each other; a non-stream answer is all generated before its head, so it gets `response_timeout`.
        """
        if channel.kind == "echo":
            assert isinstance(body, dict)
            return EchoResponse(body)
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        assert isinstance(body, bytes)
        prepared = self._prepared.get(channel)
        if prepared is None:
            prepared = self._prepared[channel] = _prepare(channel)
        first_byte = channel.first_byte_timeout_s if stream else channel.response_timeout_s
        timeout = prepared.stream_timeout if stream else prepared.whole_timeout
        data = io.BytesIO(body) if len(body) > LARGE_BODY_BYTES else body
        try:
            async with asyncio.timeout(first_byte):
                response = await self._session.post(
                    channel.base_url + path, data=data, headers=prepared.headers, timeout=timeout
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"channel {channel.name!r} did not answer in time") from exc
        except (aiohttp.ClientError, ValueError) as exc:  # ValueError: a URL or header aiohttp refuses
            raise UpstreamError(f"channel {channel.name!r} could not be reached ({type(exc).__name__})") from exc
        return HttpResponse(response, channel)
