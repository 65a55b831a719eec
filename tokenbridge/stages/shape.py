"""Shape: the completion-shape adapter between the caller's route and the upstream's.

Chat requests go upstream as they are. A `/v1/completions` request is also written as chat
(`call.upstream_body`) for the channels that speak only chat, and their answers are translated
back to `text_completion` on the way out: JSON whole, SSE event by event as each arrives. A channel
with `completions = "native"` gets the caller's request on `/completions` and its bytes pass
through untouched. The meter sits inside this stage, so it always reads the upstream's own shape
and billing is the same on both routes.

The fields chat cannot honour (echo, suffix, best_of > 1, logprobs) are refused whenever a chat
channel might answer, so failover can never change what the caller gets.
"""

from __future__ import annotations

import orjson

from tokenbridge.asgi import ASGIApp, Message, Receive, Scope, Send, is_event_stream
from tokenbridge.call import Call, get_call
from tokenbridge.completions import chat_request, completion_response, is_native, translate_event
from tokenbridge.errors import UpstreamError
from tokenbridge.limits import MAX_JSON_BYTES
from tokenbridge.upstream.sse import MAX_EVENT_BYTES, EventSplitter


class SseTranslator:
    """Chat SSE -> completions SSE, one whole event at a time."""

    __slots__ = ("splitter",)

    def __init__(self) -> None:
        self.splitter = EventSplitter()

    def feed(self, data: bytes) -> bytes:
        out = b"".join(translate_event(event) for event in self.splitter.feed(data))
        if self.splitter.held > MAX_EVENT_BYTES:
            raise UpstreamError("The upstream sent an SSE event too large to translate.")
        return out


class ShapeMiddleware:
    """Writes call.upstream_body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = get_call(scope)
        if call.route != "completions" or all(is_native(call, c) for c in call.candidates):
            call.upstream_body = call.body
            await self.app(scope, receive, send)
            return
        call.upstream_body = chat_request(call.body)
        await self.app(scope, receive, self.translating(call, send))

    @staticmethod
    def translating(call: Call, send: Send) -> Send:
        mode = ""  # decided by the response head: "" (pass through), "sse" or "json"
        sse = SseTranslator()
        head: Message | None = None
        chunks: list[bytes] = []
        size = 0

        async def send_translated(message: Message) -> None:
            nonlocal mode, head, size
            if message["type"] == "http.response.start":
                answered_by_chat = call.channel is not None and not is_native(call, call.channel)
                if answered_by_chat and message["status"] == 200:
                    headers = message.get("headers", ())
                    mode = "sse" if is_event_stream(headers) else "json"
                    message["headers"] = [(k, v) for k, v in headers if k != b"content-length"]
                    if mode == "json":
                        head = message  # sent with the translated body, which has another length
                        return
                await send(message)
            elif mode == "sse":
                message["body"] = sse.feed(message.get("body", b""))
                await send(message)
            elif mode == "json":
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > MAX_JSON_BYTES:
                    raise UpstreamError("The upstream's answer is too large to translate.")
                if not message.get("more_body", False):
                    await _send_json(send, head, b"".join(chunks))
            else:
                await send(message)

        return send_translated


async def _send_json(send: Send, head: Message | None, chat_body: bytes) -> None:
    assert head is not None
    try:
        body = orjson.dumps(completion_response(orjson.loads(chat_body)))
    except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
        raise UpstreamError("The upstream's chat answer was not valid JSON.") from exc
    head["headers"] = [*head["headers"], (b"content-length", str(len(body)).encode())]
    await send(head)
    await send({"type": "http.response.body", "body": body, "more_body": False})
