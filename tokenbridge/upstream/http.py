"""The `openai` transport: any OpenAI-compatible HTTP API, through one aiohttp session with explicit
timeouts and pool limits.

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
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp

from tokenbridge.errors import GatewayBusy, UpstreamError, UpstreamTimeout
from tokenbridge.settings import Channel
from tokenbridge.upstream.redact import caller_error_body, mask_secrets

ERROR_BODY_PEEK_BYTES = 300  # how much of a failed upstream's body goes into the log
ERROR_BODY_MAX_BYTES = 64 << 10  # an upstream 4xx body read to rebuild it for the caller; past this, a plain message
PEEK_TIMEOUT_S = 1.0  # reading it must not delay the failover to the next channel
# aiohttp warns (ResourceWarning) on a bytes body over 1 MiB, an error where warnings are errors; a
# BytesIO goes out in 64 KiB writes with the loop running in between, under the same Content-Length.
LARGE_BODY_BYTES = 1 << 20


class HttpResponse:
    """An aiohttp response read chunk by chunk, translating its read errors.

    Holds one slot of the client's pool until `close()`. What `read_whole()` or `rebuild_error()`
    read ahead is replayed by `chunks()`, so nothing is read twice from the network.
    """

    def __init__(
        self, response: aiohttp.ClientResponse, channel: Channel, release: Callable[[], None] | None = None
    ) -> None:
        self._response = response
        self._channel = channel
        self._release: Callable[[], None] | None = release
        self._replay: list[bytes] = []
        self._ended = False  # the replay is the whole body: the network has nothing more for the caller
        self.status = response.status
        self.content_type = response.headers.get("Content-Type", "application/json").encode("latin-1")
        self.content_length = response.content_length
        self.retry_after = response.headers.get("Retry-After")

    @property
    def media_type(self) -> str:
        """`text/event-stream; charset=utf-8` -> `text/event-stream`."""
        return self.content_type.split(b";", 1)[0].strip().lower().decode("latin-1")

    async def chunks(self) -> AsyncIterator[bytes]:
        replay, self._replay = self._replay, []
        for chunk in replay:
            yield chunk
        if self._ended:
            return
        name = self._channel.name
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise UpstreamTimeout(f"channel {name!r} went silent for over {self._channel.idle_timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"channel {name!r} broke off the response ({type(exc).__name__})") from exc

    async def read_whole(self, limit: int) -> bytes | None:
        """The whole body if it is at most `limit` bytes, else None; either way `chunks()` still yields it all."""
        if self.content_length is not None and self.content_length > limit:
            return None
        read: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            read.append(chunk)
            size += len(chunk)
            if size > limit:
                self._replay = read
                return None
        body = b"".join(read)
        self._replay, self._ended = [body], True
        return body

    async def peek(self) -> str:
        """The start of a failed response's body, for the log: briefly, and with the channel's secret masked."""
        try:
            async with asyncio.timeout(PEEK_TIMEOUT_S):
                data = await self._response.content.read(ERROR_BODY_PEEK_BYTES)
        except (aiohttp.ClientError, TimeoutError):
            return ""
        return mask_secrets(data.decode("utf-8", "replace"), self._channel.api_key)

    async def rebuild_error(self) -> None:
        """Replace the body of this 4xx with the OpenAI-shaped, masked one the caller may see (see redact.py)."""
        try:
            async with asyncio.timeout(PEEK_TIMEOUT_S):
                raw = await self.read_whole(ERROR_BODY_MAX_BYTES) or b""  # too long: a plain message instead
        except (UpstreamError, UpstreamTimeout, TimeoutError):
            raw = b""
        channel = self._channel
        body = caller_error_body(raw, status=self.status, secret=channel.api_key)
        self._replay, self._ended = [body], True
        self.content_type, self.content_length = b"application/json", len(body)

    def close(self) -> None:
        self._response.close()
        release, self._release = self._release, None
        if release is not None:
            release()


class _CleanPoolConnector(aiohttp.TCPConnector):
    """A TCPConnector that never hands out a pooled connection which received bytes while idle.

    An upstream that sends more than its Content-Length leaves the surplus on a kept-alive
    connection; aiohttp parses it as the answer to the next request on that connection, so another
    caller would get garbage (a 502 blamed on the channel) or a response meant for nobody
    (aio-libs/aiohttp#13656: `_get` does not look at `should_close`). Such a connection is closed instead.
    """

    async def _get(self, key: Any, traces: Any) -> Any:
        conns = self._conns.get(key)
        while conns and conns[0][0].should_close:  # aiohttp takes the oldest first (popleft): look at that one only
            conns.popleft()[0].close()
        if conns is not None and not conns:
            del self._conns[key]
        return await super()._get(key, traces)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What a request to one channel needs that does not change between requests."""

    headers: dict[str, str]
    stream_timeout: aiohttp.ClientTimeout  # reads: the idle gap between chunks
    whole_timeout: aiohttp.ClientTimeout  # a non-stream answer: nothing arrives until it is all generated


def _prepare(channel: Channel, credentials: dict[str, str]) -> _Prepared:
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity", **credentials}
    connect = channel.connect_timeout_s
    stream = aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=channel.idle_timeout_s)
    whole = aiohttp.ClientTimeout(
        total=None, connect=connect, sock_connect=connect, sock_read=channel.response_timeout_s
    )
    return _Prepared(headers, stream, whole)


class HttpTransport:
    """Owns the connection pool; `open()` sends one request and returns once the headers are in."""

    native_completions: ClassVar[bool] = True  # an OpenAI-compatible API may serve /completions itself
    native_messages: ClassVar[bool] = False  # speaks Anthropic's Messages API (`/messages`) itself

    @staticmethod
    def channel_headers(channel: Channel) -> dict[str, str]:
        """The headers that carry the channel's secret (and whatever else its kind needs on every request)."""
        return {"Authorization": f"Bearer {channel.api_key}"} if channel.api_key else {}

    native_responses: ClassVar[bool] = True  # ... and /responses (OpenAI's own does)

    def __init__(self, *, pool_limit: int) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._prepared: dict[Channel, _Prepared] = {}  # per channel of any config version; a few entries
        # Our own count of requests open upstream, instead of aiohttp's connector limit: aiohttp counts
        # the wait for a free connection in the connect timeout, so a full pool looked like a dead
        # channel and opened its breaker for everyone. Waiting here is the gateway's fault, not the channel's.
        self.pool_limit = pool_limit
        self._slots = asyncio.Semaphore(pool_limit)

    async def start(self) -> None:
        # limit=0: the semaphore above is the only limit, so aiohttp itself never queues a request.
        connector = _CleanPoolConnector(limit=0, ttl_dns_cache=300)
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
        self, channel: Channel, path: str, body: bytes, *, stream: bool = True, headers: Mapping[str, str] | None = None
    ) -> HttpResponse:
        """POST `body` to the channel; `headers`: the caller's, where the route forwards some (they win).

        A stream's head must come within `first_byte_timeout` and its chunks within `idle_timeout` of
        each other; a non-stream answer is all generated before its head, so it gets `response_timeout`.
        """
        assert self._session is not None, "HttpTransport.start() was not awaited"
        prepared = self._prepared.get(channel)
        if prepared is None:
            prepared = self._prepared[channel] = _prepare(channel, self.channel_headers(channel))
        sent = prepared.headers if not headers else {**prepared.headers, **headers}
        first_byte = channel.first_byte_timeout_s if stream else channel.response_timeout_s
        timeout = prepared.stream_timeout if stream else prepared.whole_timeout
        data = io.BytesIO(body) if len(body) > LARGE_BODY_BYTES else body
        await self._take_slot(channel)
        try:  # the slot goes back on every way out but an answer, which returns it on close()
            try:
                async with asyncio.timeout(first_byte):
                    response = await self._session.post(
                        channel.base_url + path, data=data, headers=sent, timeout=timeout
                    )
            except TimeoutError as exc:
                raise UpstreamTimeout(f"channel {channel.name!r} did not answer in time") from exc
            except (aiohttp.ClientError, ValueError) as exc:  # ValueError: a URL or header aiohttp refuses
                raise UpstreamError(f"channel {channel.name!r} could not be reached ({type(exc).__name__})") from exc
        except BaseException:
            self._slots.release()
            raise
        return HttpResponse(response, channel, self._slots.release)

    async def _take_slot(self, channel: Channel) -> None:
        """One of `pool_limit` slots, waiting at most the channel's `connect_timeout` (else 503 gateway_busy)."""
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns at once, no timer armed on the hot path
            return
        try:
            async with asyncio.timeout(channel.connect_timeout_s):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise GatewayBusy(
                f"All {self.pool_limit} upstream connections of the gateway are in use; try again shortly."
            ) from exc
