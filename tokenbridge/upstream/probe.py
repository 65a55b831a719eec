"""Probe a channel with the smallest request it can answer: one word in, one token out.

Used by `tokenbridge channels check`. A probe to a real provider costs a token or two.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson

from tokenbridge.errors import GatewayError
from tokenbridge.settings import Channel
from tokenbridge.upstream.client import UpstreamClient, speaks_messages

PROBE_MESSAGES = [{"role": "user", "content": "ping"}]
PROBE_TIMEOUT_S = 10.0  # a one-token answer that takes longer than this is reported as a timeout


@dataclass(frozen=True, slots=True)
class ProbeResult:
    channel: str
    ok: bool
    status: str  # "ok", "HTTP 401", "unreachable: ...", "timeout: ..."
    latency_ms: float


async def probe(client: UpstreamClient, channel: Channel) -> ProbeResult:
    model = channel.models[0]
    body = {"model": channel.upstream_model(model), "messages": PROBE_MESSAGES, "max_tokens": 1}
    payload = orjson.dumps(body)
    started = time.perf_counter()
    try:
        # The client's own first-byte timeout speaks first; this is only a ceiling for long ones.
        async with asyncio.timeout(min(PROBE_TIMEOUT_S, channel.first_byte_timeout_s + 1)):
            # The body is one both chat and Anthropic's Messages API take as it is.
            path = "/messages" if speaks_messages(channel) else "/chat/completions"
            response = await client.open(channel, path, payload)  # timed like a stream's head
            try:
                async for _ in response.chunks():
                    pass
            finally:
                response.close()
    except GatewayError as exc:
        return ProbeResult(channel.name, False, exc.message, _ms(started))
    except TimeoutError:
        return ProbeResult(channel.name, False, f"timeout: no answer in {_ms(started) / 1000:.1f}s", _ms(started))
    ok = 200 <= response.status < 300
    return ProbeResult(channel.name, ok, "ok" if ok else f"HTTP {response.status}", _ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
