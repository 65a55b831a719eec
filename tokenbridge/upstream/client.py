"""The one seam to upstreams: a transport per provider kind, picked from a table by the channel's `kind`.

Every transport takes the request as the bytes the proxy built and answers an `UpstreamResponse`,
so nothing above this module knows which kind answered. A kind is one entry in `TRANSPORTS`
(uvicorn's `config.py` tables: a name, its implementation) and one in `settings.KINDS`, which
validates the config; what a kind can or cannot do is an attribute of its transport, not a test of
its name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import ClassVar, Protocol

from tokenbridge.settings import Channel
from tokenbridge.upstream.anthropic import AnthropicTransport
from tokenbridge.upstream.echo import EchoTransport
from tokenbridge.upstream.http import HttpTransport


class UpstreamResponse(Protocol):
    """What the proxy needs of an answer, from the network or from the echo channel."""

    status: int
    content_type: bytes
    content_length: int | None
    retry_after: str | None  # the Retry-After of a 429, as sent

    @property
    def media_type(self) -> str: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def read_whole(self, limit: int) -> bytes | None: ...

    async def peek(self) -> str: ...

    async def rebuild_error(self) -> None: ...

    def close(self) -> None: ...


class Transport(Protocol):
    """One provider kind's way of sending a request; built once per process with the client's pool limit."""

    native_completions: ClassVar[bool]  # can take a `/completions` request as it is (`completions = "native"`)
    native_messages: ClassVar[bool]  # speaks Anthropic's Messages API (`/messages`, `/messages/count_tokens`)
    native_responses: ClassVar[bool]  # can take a `/responses` request as it is (`responses = "native"`)

    def __init__(self, *, pool_limit: int) -> None: ...

    async def start(self) -> None: ...

    def forget_channels(self) -> None: ...

    async def close(self) -> None: ...

    async def open(
        self, channel: Channel, path: str, body: bytes, *, stream: bool = True, headers: Mapping[str, str] | None = None
    ) -> UpstreamResponse: ...


TRANSPORTS: Mapping[str, type[Transport]] = {
    "openai": HttpTransport,  # any OpenAI-compatible HTTP API
    "anthropic": AnthropicTransport,  # Anthropic's API: x-api-key, anthropic-version, /messages natively
    "echo": EchoTransport,  # built in, answered inside the process
}


class UpstreamClient:
    """The transports of every kind, for the life of the process; `open()` hands a request to the channel's."""

    def __init__(self, *, pool_limit: int) -> None:
        self.pool_limit = pool_limit
        self._transports = {kind: transport(pool_limit=pool_limit) for kind, transport in TRANSPORTS.items()}

    async def start(self) -> None:
        for transport in self._transports.values():
            await transport.start()

    def forget_channels(self) -> None:
        """After a reload: what the transports prepared for channels no longer in the config is dropped."""
        for transport in self._transports.values():
            transport.forget_channels()

    async def close(self) -> None:
        for transport in self._transports.values():
            await transport.close()

    async def open(
        self, channel: Channel, path: str, body: bytes, *, stream: bool = True, headers: Mapping[str, str] | None = None
    ) -> UpstreamResponse:
        """Send `body` to the channel; returns once the answer's head is in (see each transport's timeouts).
        `headers`: the caller's own that the route forwards (adapters.py), None for most."""
        return await self._transports[channel.kind].open(channel, path, body, stream=stream, headers=headers)


def takes_completions(channel: Channel) -> bool:
    """Does this channel take a `/completions` request as it is? Configured so, and its kind can."""
    return channel.completions == "native" and TRANSPORTS[channel.kind].native_completions


def speaks_messages(channel: Channel) -> bool:
    """Does this channel speak Anthropic's Messages API itself (else it is spoken to through chat)?"""
    return TRANSPORTS[channel.kind].native_messages


def takes_responses(channel: Channel) -> bool:
    """Does this channel take a `/responses` request as it is? Configured so, and its kind can."""
    return channel.responses == "native" and TRANSPORTS[channel.kind].native_responses
