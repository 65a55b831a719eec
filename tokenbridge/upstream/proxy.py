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
from tokenbridge.completions import upstream_target
from tokenbridge.errors import ClientGone, GatewayError, NoAvailableChannel, UpstreamError, UpstreamTimeout
from tokenbridge.settings import Channel
from tokenbridge.upstream.breaker import Breakers
from tokenbridge.upstream.client import HttpResponse, UpstreamClient, UpstreamResponse

log = logging.getLogger("tokenbridge")

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
CHANNEL_FAULT_STATUSES = frozenset({401, 403})  # passed on, but they say the channel is misconfigured


def upstream_payload(call: Call, channel: Channel, body: dict[str, Any]) -> bytes | dict[str, object]:
    """The request body for one channel: the checked body's bytes (`call.raw_body`) unless something must change.

    Changes: the model name (`model_map`), and asking a stream for its usage so it can be billed
    (the meter cuts that chunk out again if the caller did not ask for it).
    """
    model = channel.upstream_model(call.model)
    ask_usage = call.stream and not caller_wants_usage(body)
    if channel.kind != "echo" and body is call.body and model == call.model and not ask_usage:
        return call.raw_body
    payload: dict[str, object] = {**body, "model": model}
    if ask_usage:
        payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return payload if channel.kind == "echo" else orjson.dumps(payload)  # echo takes the parsed dict


class UpstreamProxy:
    """Writes call.channel, call.upstream_model, call.attempts."""

    def __init__(self, *, client: UpstreamClient, breakers: Breakers) -> None:
        self.client = client
        self.breakers = breakers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward in this task while one watcher task waits on receive(); a disconnect cancels us."""
        call = get_call(scope)
        task = asyncio.current_task()
        assert task is not None
        finished = caller_left = False

        async def watch() -> None:
            nonlocal caller_left
            while (await receive())["type"] != "http.disconnect":
                pass
            # Once the meter has seen the answer complete, what is left is the settle and the last
            # bytes: cancelling then would cut the settle's bookkeeping short for a bill already final.
            if not finished and call.end_reason != "done":
                caller_left = True
                task.cancel()  # closes the upstream response in _forward's finally

        watcher = asyncio.ensure_future(watch())
        try:
            await self._forward(call, send)
        except asyncio.CancelledError:
            if not caller_left:
                raise  # cancelled from outside (shutdown): not ours to swallow
            task.uncancel()
            raise ClientGone() from None
        finally:
            finished = True
            watcher.cancel()

    async def _forward(self, call: Call, send: Send) -> None:
        response = await self._open(call)
        assert call.channel is not None
        try:
            headers = [(b"content-type", response.content_type)]
            if response.content_length is not None:
                headers.append((b"content-length", str(response.content_length).encode()))
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            try:
                async for chunk in response.chunks():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except GatewayError as exc:  # the channel broke mid-answer: that counts against it
                self.breakers.record(call.channel.name, call.model, ok=False, reason=exc.message)
                raise
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            response.close()

    async def _open(self, call: Call) -> UpstreamResponse:
        """The first candidate's response that is an answer, not a failure to retry."""
        last: GatewayError | None = None
        max_attempts = call.settings.server.max_attempts
        for channel in call.candidates:
            if call.attempts >= max_attempts:
                break
            if not self.breakers.admit(channel.name, call.model):
                continue  # its circuit opened meanwhile, or another request holds its one probe
            call.attempts += 1
            call.channel = channel
            call.upstream_model = channel.upstream_model(call.model)
            path, body = upstream_target(call, channel)
            response: UpstreamResponse | None = None
            try:  # every admitted attempt ends in exactly one record() or release()
                payload = upstream_payload(call, channel, body)
                response = await self.client.open(channel, path, payload, stream=call.stream)
                if response.status not in RETRY_STATUSES:
                    # A channel whose own secret or address is wrong fails every caller: count it, pass it on.
                    ok = response.status not in CHANNEL_FAULT_STATUSES
                    self.breakers.record(channel.name, call.model, ok=ok, reason=f"HTTP {response.status}")
                    return response
                detail = await response.peek() if isinstance(response, HttpResponse) else ""
                response.close()
            except GatewayError as exc:
                self._failed(call, channel, exc.message)
                last = exc
                continue
            except BaseException:  # cancelled: the caller left, no verdict on the channel
                self.breakers.release(channel.name, call.model)
                if response is not None:
                    response.close()
                raise
            self._failed(call, channel, f"HTTP {response.status} {detail}".strip())
            last = UpstreamError(f"channel {channel.name!r} answered HTTP {response.status}")
        if last is None:
            raise NoAvailableChannel(f"Every channel for model '{call.model}' is cooling down; try again shortly.")
        if isinstance(last, UpstreamTimeout):
            raise last
        raise UpstreamError(
            f"Every channel for model '{call.model}' failed ({call.attempts} tried); the last: {last.message}"
        )

    def _failed(self, call: Call, channel: Channel, reason: str) -> None:
        log.warning(
            "request %s: channel %r failed for model %r (attempt %d), trying the next: %s",
            call.request_id, channel.name, call.model, call.attempts, reason,
        )  # fmt: skip
        self.breakers.record(channel.name, call.model, ok=False, reason=reason)
