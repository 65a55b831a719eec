"""The proxy and the meter's completion marker: a caller who leaves once the answer is complete does not
cut it short (its settle is under way); one who leaves before does."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tests.echo_config import echo_settings
from tokenbridge.asgi import Message
from tokenbridge.call import Call
from tokenbridge.errors import ClientGone
from tokenbridge.upstream.breaker import Breakers
from tokenbridge.upstream.client import UpstreamClient
from tokenbridge.upstream.proxy import UpstreamProxy


async def echo_proxy(*, stream: bool) -> tuple[Call, UpstreamClient, UpstreamProxy]:
    """A chat Call on the echo channel, a started client (the test closes it) and the proxy."""
    settings = echo_settings()
    body = {"model": "m", "messages": [{"role": "user", "content": "a b c"}], "stream": stream}
    call = Call(request_id="req-p", settings=settings)
    call.route, call.body = "chat", body
    call.raw_body, call.model, call.stream, call.candidates = orjson.dumps(body), "m", stream, settings.channels
    client = UpstreamClient(pool_limit=4)
    await client.start()
    return (
        call,
        client,
        UpstreamProxy(client=client, breakers=Breakers(settings.server.breaker, on_change=lambda c: None)),
    )


@pytest.mark.parametrize("complete", [True, False])
async def test_a_caller_leaving_at_the_last_chunk_cancels_only_an_incomplete_answer(complete: bool) -> None:
    call, client, proxy = await echo_proxy(stream=True)
    left = asyncio.Event()  # the caller's disconnect is in
    leave = asyncio.Event()
    sent: list[bytes] = []
    scope: Any = {"type": "http", "tokenbridge.call": call}

    async def receive() -> Message:
        await leave.wait()
        left.set()  # the watcher looks at the marker in this same step, before anything else runs
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message.get("body", b""))
        if b"[DONE]" in message.get("body", b""):
            call.complete = complete  # what the meter writes before [DONE] goes out
            leave.set()
            await left.wait()  # the proxy is cancelled here if the watcher decides so

    try:
        if complete:
            await proxy(scope, receive, send)
        else:
            with pytest.raises(ClientGone):
                await proxy(scope, receive, send)
    finally:
        await client.close()
    assert (sent[-1] == b"") is complete  # the end of the body went out only for the complete answer


@pytest.mark.parametrize("stream", [False, True])
async def test_a_json_answer_read_whole_goes_out_in_one_body_message_a_stream_as_it_comes(stream: bool) -> None:
    call, client, proxy = await echo_proxy(stream=stream)
    never = asyncio.Event()
    sent: list[Message] = []

    async def receive() -> Message:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        await proxy({"type": "http", "tokenbridge.call": call}, receive, send)
    finally:
        await client.close()
    assert sent[0]["type"] == "http.response.start" and all(m["type"] == "http.response.body" for m in sent[1:])
    ends = [m.get("more_body", False) is False for m in sent[1:]]
    assert ends == [False] * (len(ends) - 1) + [True]  # one end, last
    if stream:
        assert sent[-1]["body"] == b"" and len(sent) > 3  # events as they come, then the end
    else:
        assert len(sent) == 2 and orjson.loads(sent[1]["body"]) == call.answer  # the whole answer is the end
