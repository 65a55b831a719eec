"""The upstream proxy, innermost: send the request to the first channel that answers, stream its bytes back.

A raw ASGI app that sends `http.response.*` messages itself (no StreamingResponse). Before the
first byte reaches the caller, a channel that cannot be reached, times out, answers 5xx, 429 or
408, refuses its own key (401/403), or answers 200 with what is not an answer (see `_fault`) is
logged, counted against it, and the next candidate is tried, up to `server.max_attempts`. Any
other 4xx is the answer, its error fields rebuilt without secrets (redact.py). When every channel
tried answered 429, the caller gets a 429 with the upstreams' Retry-After. The caller's side is
watched the whole time, waiting included: if the caller goes away, the upstream request is closed
at once (uvicorn's send() goes quiet after a disconnect, it does not raise, so only receive() tells).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
from datetime import UTC, datetime
from typing import Any

import orjson

from tokenbridge.adapters import adapter_for, wire_for
from tokenbridge.asgi import Receive, Scope, Send
from tokenbridge.call import Call, caller_wants_usage, get_call
from tokenbridge.errors import (
    ClientGone,
    GatewayBusy,
    GatewayError,
    NoAvailableChannel,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from tokenbridge.limits import MAX_JSON_BYTES
from tokenbridge.settings import Channel
from tokenbridge.upstream.breaker import Breakers
from tokenbridge.upstream.client import UpstreamClient, UpstreamResponse
from tokenbridge.upstream.http import ERROR_BODY_PEEK_BYTES
from tokenbridge.upstream.redact import mask_secrets

log = logging.getLogger("tokenbridge")

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
CHANNEL_FAULT_STATUSES = frozenset({401, 403})  # the channel's own secret is wrong: its fault, not the caller's


def upstream_payload(call: Call, channel: Channel, body: dict[str, Any], *, ask_usage: bool = True) -> bytes:
    """The request body for one channel: the checked body's bytes (`call.raw_body`) unless something must change.

    Changes: the model name (`model_map`), and asking a stream for its usage so it can be billed
    (the meter cuts that chunk out again if the caller did not ask for it), on a wire whose streams
    carry usage only when asked (`ask_usage`; Anthropic's always do, and refuse `stream_options`).
    """
    model = channel.upstream_model(call.model)
    ask_usage = ask_usage and call.stream and not caller_wants_usage(body)
    if body is call.body and model == call.model and not ask_usage:
        return call.raw_body
    payload: dict[str, object] = {**body, "model": model}
    if ask_usage:
        payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return orjson.dumps(payload)


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
            if not finished and not call.complete:
                caller_left = True
                task.cancel()  # closes the upstream response in _forward's finally

        watcher = task.get_loop().create_task(watch())  # not ensure_future: its checks and loop look-up cost ~3 µs
        try:
            await self._forward(call, send, scope.get("headers", []))
        except asyncio.CancelledError:
            if not caller_left:
                raise  # cancelled from outside (shutdown): not ours to swallow
            task.uncancel()
            raise ClientGone() from None
        finally:
            finished = True
            watcher.cancel()

    async def _forward(self, call: Call, send: Send, caller_headers: list[tuple[bytes, bytes]]) -> None:
        response = await self._open(call, caller_headers)
        assert call.channel is not None
        try:
            headers = [(b"content-type", response.content_type)]
            if response.content_length is not None:
                headers.append((b"content-length", str(response.content_length).encode()))
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            if call.answer is not None:  # read whole and parsed (`_fault`): its end goes with it, one message less
                body = b"".join([chunk async for chunk in response.chunks()])  # the replay, no network read
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            try:
                async for chunk in response.chunks():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except GatewayError as exc:  # the channel broke mid-answer: that counts against it
                self.breakers.record(call.channel.name, call.model, ok=False, reason=exc.message)
                raise
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            response.close()

    async def _open(self, call: Call, caller_headers: list[tuple[bytes, bytes]]) -> UpstreamResponse:
        """The first candidate's response that is an answer, not a failure to retry.
        `caller_headers`: the request's, of which the adapter may forward a few (`Adapter.forward`)."""
        last: GatewayError | None = None
        limited: list[float | None] = []  # the Retry-After of each channel that answered 429
        max_attempts = call.settings.server.max_attempts
        for channel in call.candidates:
            if call.attempts >= max_attempts:
                break
            if not self.breakers.admit(channel.name, call.model):
                continue  # its circuit opened meanwhile, or another request holds its one probe
            call.attempts += 1
            call.channel = channel
            call.upstream_model = channel.upstream_model(call.model)
            call.wire = wire_for(call.route, channel)
            call.upstream_body = body = call.upstream_bodies.get(call.wire, call.body)
            adapter = adapter_for(call.route, channel)
            headers = forwarded(caller_headers, adapter.forward) if adapter.forward else None
            response: UpstreamResponse | None = None
            try:  # every admitted attempt ends in exactly one record() or release()
                payload = upstream_payload(call, channel, body, ask_usage=adapter.ask_usage)
                response = await self.client.open(channel, adapter.path, payload, stream=call.stream, headers=headers)
                fault = await self._fault(call, channel, response)
            except GatewayBusy:  # our own pool is full: no verdict on the channel, and no other would fare better
                self.breakers.release(channel.name, call.model)
                raise
            except GatewayError as exc:
                if response is not None:
                    response.close()
                self._failed(call, channel, exc.message)
                last = exc
                continue
            except BaseException:  # cancelled: the caller left, no verdict on the channel
                self.breakers.release(channel.name, call.model)
                if response is not None:
                    response.close()
                raise
            if fault is None:
                self.breakers.record(channel.name, call.model, ok=True, reason=f"HTTP {response.status}")
                return response
            reason, last = fault
            response.close()
            self._failed(call, channel, reason)
            if response.status == 429:
                limited.append(retry_after_s(response.retry_after))
        if last is None:
            retry_in = self.breakers.retry_in((c.name for c in call.candidates), call.model)
            raise NoAvailableChannel(call.model, retry_in_s=retry_in)
        if isinstance(last, UpstreamTimeout):
            raise last
        if limited and len(limited) == call.attempts:  # every channel tried is rate limited: say when to retry
            known = [s for s in limited if s is not None]
            raise UpstreamRateLimited(
                f"Every channel for model '{call.model}' is rate limited upstream ({call.attempts} tried).",
                retry_in_s=min(known) if known else None,
            )
        raise UpstreamError(
            f"Every channel for model '{call.model}' failed ({call.attempts} tried); the last: {last.message}"
        )

    @staticmethod
    async def _fault(call: Call, channel: Channel, response: UpstreamResponse) -> tuple[str, GatewayError] | None:
        """Why this response is no answer (the log's reason, the caller's error), or None if it is one.

        Judged before the first byte goes out, while another channel can still answer: a status to
        retry, the channel's own credentials refused (401/403: the caller's key is not the one at
        fault), or a 200 that is not what an OpenAI API sends (an HTML page from a proxy, a JSON
        body that does not parse). A non-stream answer is all generated before its head arrives, so
        reading it whole (up to MAX_JSON_BYTES) costs no generation time, only its transfer.
        """
        name, status = channel.name, response.status
        if status in RETRY_STATUSES or status in CHANNEL_FAULT_STATUSES:
            reason = f"HTTP {status} {await response.peek()}".strip()
            if status in CHANNEL_FAULT_STATUSES:
                return reason, UpstreamError(f"channel {name!r} refused the gateway's credentials (HTTP {status}): "
                                             "its API key is wrong or lacks access")  # fmt: skip
            return reason, UpstreamError(f"channel {name!r} answered HTTP {status}")
        if 400 <= status < 500:
            await response.rebuild_error()  # the caller's problem, passed on, but never with a secret in it
            return None
        wanted = "text/event-stream" if call.stream else "application/json"
        if status == 200 and response.media_type != wanted:
            reason = f"HTTP 200 with {response.media_type or 'no content type'} instead of {wanted}"
            return f"{reason}: {await response.peek()}", UpstreamError(f"channel {name!r} answered {reason}")
        if status == 200 and not call.stream:
            whole = await response.read_whole(MAX_JSON_BYTES)
            call.answer = None if whole is None else _json_object(whole)
            if whole is not None and call.answer is None:
                text = mask_secrets(whole[:ERROR_BODY_PEEK_BYTES].decode("utf-8", "replace"), channel.api_key)
                return f"HTTP 200 with a body that is not JSON: {text}", UpstreamError(
                    f"channel {name!r} answered HTTP 200 with a body that is not JSON"
                )
        return None

    def _failed(self, call: Call, channel: Channel, reason: str) -> None:
        log.warning(
            "request %s: channel %r failed for model %r (attempt %d), trying the next: %s",
            call.request_id, channel.name, call.model, call.attempts, reason,
        )  # fmt: skip
        self.breakers.record(channel.name, call.model, ok=False, reason=reason)


def forwarded(caller_headers: list[tuple[bytes, bytes]], names: frozenset[bytes]) -> dict[str, str]:
    """The caller's headers among `names` (lower-case), as the transport takes them; every other stays here."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in caller_headers if name in names}


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def retry_after_s(value: str | None) -> float | None:
    """An upstream's Retry-After (seconds, or an HTTP date) as seconds from now; None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
