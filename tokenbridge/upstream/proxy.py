"""The upstream proxy, innermost: send the request to the first channel that answers, stream its bytes back.

A raw ASGI app that sends `http.response.*` messages itself (no StreamingResponse). Before the
first byte reaches the caller, a channel that cannot be reached, times out, or answers 5xx, 429 or
408 is logged and the next candidate is tried, up to `server.max_attempts`. Any other status is the
answer, 4xx included, passed through unchanged. The caller's side is watched the whole time,
waiting included: if the caller goes away, the upstream request is closed at once (uvicorn's
send() goes quiet after a disconnect, it does not raise, so only receive() tells).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from tokenbridge.asgi import Receive, Scope, Send
from tokenbridge.call import Call, caller_wants_usage, get_call
from tokenbridge.errors import ClientGone, GatewayError, UpstreamError, UpstreamTimeout
from tokenbridge.settings import Channel
from tokenbridge.stages.shape import upstream_target
from tokenbridge.upstream.client import HttpResponse, UpstreamClient, UpstreamResponse

log = logging.getLogger("tokenbridge")

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))


def upstream_payload(call: Call, channel: Channel, body: dict[str, Any]) -> bytes | dict[str, object]:
    """The request body for one channel: the caller's bytes unless something must change.

    Changes: the model name (`model_map`), and asking a stream for its usage so it can be billed
    (the meter cuts that chunk out again if the caller did not ask for it).
    """
    model = channel.upstream_model(call.model)
    ask_usage = call.stream and not caller_wants_usage(body)
    if channel.kind == "echo":
        changes: dict[str, object] = {"model": model}
        if ask_usage:
            changes["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return {**body, **changes}
    if body is call.body and model == call.model and not ask_usage:
        return call.raw_body
    payload = {**body, "model": model}
    if ask_usage:
        payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return orjson.dumps(payload)


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class UpstreamProxy:
    """Writes call.channel, call.upstream_model, call.attempts."""

    def __init__(self, *, client: UpstreamClient) -> None:
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = get_call(scope)
        work = asyncio.ensure_future(self._forward(call, send))
        watch = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait((work, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, watch):
                task.cancel()  # cancelling `work` closes the upstream response in its finally
        if work.done() and not work.cancelled():
            work.result()  # the answer went out, or re-raise why it did not
            return
        await asyncio.gather(work, return_exceptions=True)  # let its cleanup finish before we report
        raise ClientGone()

    async def _forward(self, call: Call, send: Send) -> None:
        response = await self._open(call)
        try:
            headers = [(b"content-type", response.content_type)]
            if response.content_length is not None:
                headers.append((b"content-length", str(response.content_length).encode()))
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            async for chunk in response.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            response.close()

    async def _open(self, call: Call) -> UpstreamResponse:
        """The first candidate's response that is an answer, not a failure to retry."""
        last: GatewayError | None = None
        for channel in call.candidates[: call.settings.server.max_attempts]:
            call.attempts += 1
            call.channel = channel
            call.upstream_model = channel.upstream_model(call.model)
            path, body = upstream_target(call, channel)
            try:
                response = await self.client.open(channel, path, upstream_payload(call, channel, body))
            except GatewayError as exc:
                log.warning(
                    "request %s: channel %r failed for model %r (attempt %d): %s",
                    call.request_id,
                    channel.name,
                    call.model,
                    call.attempts,
                    exc.message,
                )
                last = exc
                continue
            if response.status not in RETRY_STATUSES:
                return response
            detail = await response.peek() if isinstance(response, HttpResponse) else ""
            response.close()
            log.warning(
                "request %s: channel %r answered %d for model %r (attempt %d): %s",
                call.request_id,
                channel.name,
                response.status,
                call.model,
                call.attempts,
                detail,
            )
            last = UpstreamError(f"channel {channel.name!r} answered HTTP {response.status}")
        if isinstance(last, UpstreamTimeout):
            raise last
        tried = call.attempts
        raise UpstreamError(
            f"Every channel for model '{call.model}' failed ({tried} tried); the last: {last.message if last else '?'}"
        )
