"""Shape: the adapter between the caller's route and the wire of the channel that answers.

Before the proxy runs, the caller's body is translated once for each wire among the candidates
(adapters.py); a route whose channels take its shape as it is costs nothing here. On the way out,
the answer of a channel whose adapter translates is turned into the caller's shape: JSON whole,
SSE event by event as each arrives. Where no translation is needed the bytes pass through
untouched. The meter sits inside this stage, so it always reads the wire's own shape and billing
is the same whichever route the caller used.

The fields a wire cannot honour are refused (by its adapter's request translation) whenever a
channel speaking it might answer, so failover can never change what the caller gets.
"""

from __future__ import annotations

import orjson

from tokenbridge.adapters import ADAPTERS, EventTranslator, upstream_bodies
from tokenbridge.asgi import ASGIApp, Message, Receive, Scope, Send, is_event_stream
from tokenbridge.call import Call, get_call
from tokenbridge.errors import GatewayError, UpstreamError
from tokenbridge.limits import MAX_JSON_BYTES
from tokenbridge.upstream.sse import MAX_EVENT_BYTES, EventSplitter


class SseTranslator:
    """Upstream SSE -> the caller's SSE, one whole event at a time."""

    __slots__ = ("splitter", "events")

    def __init__(self, events: EventTranslator) -> None:
        self.splitter = EventSplitter()
        self.events = events

    def feed(self, data: bytes) -> tuple[bytes, GatewayError | None]:
        """The caller's bytes for `data`, and the error that ends the stream after them, if one does
        (a translator raises for an event that says the upstream failed: what came before it goes out)."""
        translate = self.events.translate
        out: list[bytes] = []
        try:
            for event in self.splitter.feed(data):
                out.append(translate(event))
        except GatewayError as exc:
            return b"".join(out), exc
        if self.splitter.held > MAX_EVENT_BYTES:
            raise UpstreamError("The upstream sent an SSE event too large to translate.")
        return b"".join(out), None


class ShapeMiddleware:
    """Writes call.upstream_bodies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = get_call(scope)
        call.upstream_bodies = upstream_bodies(call)
        if all(call.upstream_bodies[wire] is call.body for wire in call.upstream_bodies):
            await self.app(scope, receive, send)  # every candidate takes the caller's shape: nothing to translate
            return
        await self.app(scope, receive, self.translating(call, send))

    @staticmethod
    def translating(call: Call, send: Send) -> Send:
        mode = ""  # decided by the response head: "" (pass through), "sse" or "json"
        sse: SseTranslator | None = None
        head: Message | None = None
        chunks: list[bytes] = []
        size = 0

        async def send_translated(message: Message) -> None:
            nonlocal mode, sse, head, size
            if message["type"] == "http.response.start":
                adapter = ADAPTERS[(call.route, call.wire)] if call.channel is not None else None
                if adapter is not None and adapter.translates and message["status"] == 200:
                    headers = message.get("headers", ())
                    mode = "sse" if is_event_stream(headers) else "json"
                    message["headers"] = [(k, v) for k, v in headers if k != b"content-length"]
                    if mode == "sse":
                        if adapter.events is None:
                            raise UpstreamError("The upstream answered with a stream this route cannot translate.")
                        sse = SseTranslator(adapter.events(call))
                    else:
                        if adapter.answer_for(call) is None:
                            raise UpstreamError("The upstream answered with JSON this route cannot translate.")
                        head = message  # sent with the translated body, which has another length
                        return
                await send(message)
            elif sse is not None:
                message["body"], failure = sse.feed(message.get("body", b""))
                if failure is not None:
                    await send({"type": "http.response.body", "body": message["body"], "more_body": True})
                    raise failure
                await send(message)
            elif mode == "json":
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > MAX_JSON_BYTES:
                    raise UpstreamError("The upstream's answer is too large to translate.")
                if not message.get("more_body", False):
                    await _send_json(send, head, b"".join(chunks), call)
            else:
                await send(message)

        return send_translated


async def _send_json(send: Send, head: Message | None, upstream: bytes, call: Call) -> None:
    assert head is not None
    answer = ADAPTERS[(call.route, call.wire)].answer_for(call)
    assert answer is not None
    try:
        body = orjson.dumps(answer(orjson.loads(upstream)))
    except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
        raise UpstreamError("The upstream's answer was not valid JSON of its kind.") from exc
    head["headers"] = [*head["headers"], (b"content-length", str(len(body)).encode())]
    await send(head)
    await send({"type": "http.response.body", "body": body, "more_body": False})
