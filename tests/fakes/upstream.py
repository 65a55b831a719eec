"""A fake OpenAI upstream: a raw ASGI app, served by real uvicorn on loopback, switched by model name.

| model            | behaviour                                                               |
| ---------------- | ----------------------------------------------------------------------- |
| (any other)      | answers "Hello from fake" (3 tokens), usage 12 prompt / 3 completion   |
| fake-cached      | as above, with 8 of the 12 prompt tokens cached                         |
| fake-nousage     | as above, without any usage                                             |
| fake-hold        | streams the role and the three content chunks, then waits for `release()`|
|                  | (re-armed by `arm()`); without stream: waits, then answers JSON         |
| fake-nodone      | streams the answer but never sends `data: [DONE]`                       |
| fake-break       | streams the first chunk, then drops the connection mid-response        |
| fake-huge        | answers JSON with usage of 10M completion tokens                        |
| fake-usage-2p63  | answers (JSON or SSE) with usage of 2**63 prompt tokens: past a SQLite INTEGER |
| fake-usage-9e18  | answers (JSON or SSE) with usage of 9e18 prompt and completion tokens    |
| fake-garbage     | answers 200 "application/json" whose body is not JSON                    |
| fake-unterminated| streams as usual but ends on `data: [DONE]` with no blank line after it  |
| fake-sized-sse   | streams with a Content-Length header (all events in one body)           |
| fake-cr          | streams with bare-CR line ends (`\r\r` after each event), valid SSE      |
| fake-twousage    | streams the usage chunk, then a second one that says 1 prompt / 1 compl.|
| fake-baddelta    | streams, after the first piece, a choice and a delta that are no objects|
| fake-flaky       | 500 while `flaky_down` is set, else like any other model                 |
| fake-400         | 400 with an OpenAI error body                                            |
| fake-500         | 500                                                                      |
| fake-html        | 200 "text/html" (an HTML error page behind a proxy), stream or not       |
| fake-leaky-400   | 400 whose error message repeats the Authorization header it received    |
| fake-401         | 401 "Incorrect API key provided: <the key it received>"                  |
| fake-429         | 429 with `Retry-After: 7`                                                 |
| fake-toolcall    | answers a tool call (JSON, or its name then argument pieces as SSE), no usage |
| fake-roundtrip   | calls the request's tool (Bash if offered), then answers with its result    |

Under `/v1/messages` it is Anthropic (tests/fakes/anthropic.py has its models).

On `/v1/responses` (a native Responses upstream) and for the tool round trips of `fake-tools`: see
tests/fakes/responses.py.

On `/v1/completions` (a native completions upstream) any model answers "Hello from fake" in the
`text_completion` shape, JSON or SSE, as bytes the tests can rebuild with `native_json` / `native_sse`.
On `/v1/embeddings`: see tests/fakes/embeddings.py.

Every request is recorded (path, headers, body) for the tests to inspect. A held request whose
client (the gateway) hangs up is counted in `hung_up`, a semaphore the test can wait on.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import orjson

from tests.fakes import anthropic, responses, roundtrip
from tests.fakes.embeddings import embeddings_answer

PIECES = ["Hello", " from", " fake"]
TEXT = "".join(PIECES)
USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
CACHED_USAGE = {**USAGE, "prompt_tokens_details": {"cached_tokens": 8}}
# Usage no single request can have (issue 11, items 2 and 3): the gateway must estimate instead.
IMPOSSIBLE_USAGE = {
    "fake-usage-2p63": {"prompt_tokens": 2**63, "completion_tokens": 3, "total_tokens": 2**63 + 3},
    "fake-usage-9e18": {"prompt_tokens": 9 * 10**18, "completion_tokens": 9 * 10**18, "total_tokens": 18 * 10**18},
}
ERROR_400 = {
    "error": {"message": "fake says no", "type": "invalid_request_error", "param": "messages", "code": "fake_no"}
}


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes = b""  # the body's bytes as they came
    query: str = ""  # the query string, if any (Claude Code sends `?beta=true`)


class FakeUpstream:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._gate: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.holding = threading.Semaphore(0)  # released as each held request starts waiting
        self.hung_up = threading.Semaphore(0)  # released as each held request sees its client leave
        self.flaky_down = True

    def arm(self) -> None:
        """Make `fake-hold` requests wait again and forget earlier signals (from the test thread)."""
        self._in_loop(lambda gate: gate.clear())
        for signal in (self.holding, self.hung_up):
            while signal.acquire(blocking=False):
                pass

    def release(self) -> None:
        """Let every held `fake-hold` stream go on, and any that reach the hold later pass it."""
        self._in_loop(lambda gate: gate.set())

    def _in_loop(self, change: Any) -> None:
        assert self._loop is not None and self._gate is not None
        gate = self._gate

        async def apply() -> None:
            change(gate)

        asyncio.run_coroutine_threadsafe(apply(), self._loop).result(10)

    def requests_for(self, model: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.body.get("model") == model]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                self._loop = asyncio.get_running_loop()
                self._gate = asyncio.Event()
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = orjson.loads(raw)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        with self._lock:
            self.seen.append(Seen(scope["path"], headers, body, raw, scope.get("query_string", b"").decode()))
        model = body.get("model", "")
        if scope["path"].startswith("/v1/messages"):  # Anthropic's API: tests/fakes/anthropic.py
            await anthropic.answer(scope["path"], headers, body, send, receive, self._held)
        elif scope["path"] == "/v1/responses":
            await responses.serve_native(self, send, receive, body)
        elif model == "fake-tools":
            await responses.serve_tools(send, body)
        elif scope["path"] == "/v1/completions":
            include_usage = (body.get("stream_options") or {}).get("include_usage") is True
            if body.get("stream"):
                await send(
                    {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
                )
                for event in native_sse(model, include_usage=include_usage):
                    await send({"type": "http.response.body", "body": event, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                await _send_bytes(send, 200, native_json(model))
        elif scope["path"] == "/v1/embeddings":
            if model != "fake-hold" or await self._held(receive):
                await _json(send, *embeddings_answer(body))
        elif model == "fake-hold" and not body.get("stream"):
            if await self._held(receive):
                await _json(send, 200, _completion(body))
        elif model in MISBEHAVING:  # the upstream faults of issue 11 (items 7, 11, 13, 18)
            await MISBEHAVING[model](send, headers.get("authorization", ""))
        elif model == "fake-toolcall":
            await _tool_call(send, stream=body.get("stream") is True)
        elif model == "fake-roundtrip":  # a tool call, then an answer with its result (tests/fakes/roundtrip.py)
            await roundtrip.answer(body, send)
        elif model == "fake-garbage":
            await _send_bytes(send, 200, b"<html>not json</html>")
        elif model == "fake-400":
            await _json(send, 400, ERROR_400)
        elif model == "fake-500" or (model == "fake-flaky" and self.flaky_down):
            await _json(send, 500, {"error": {"message": "fake is down", "type": "server_error"}})
        elif body.get("stream") and model == "fake-sized-sse":
            include_usage = (body.get("stream_options") or {}).get("include_usage") is True
            data = b"".join(native_sse(model, include_usage=include_usage))
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"content-length", str(len(data)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": data})
        elif body.get("stream"):
            await self._stream(send, receive, body)
        else:
            await _json(send, 200, _completion(body))

    async def _held(self, receive: Any) -> bool:
        """Wait for `release()`; False (and a count in `hung_up`) if the client hangs up first."""
        assert self._gate is not None
        self.holding.release()
        released = asyncio.ensure_future(self._gate.wait())
        hang_up = asyncio.ensure_future(_disconnect(receive))
        await asyncio.wait((released, hang_up), return_when=asyncio.FIRST_COMPLETED)
        released.cancel()
        hang_up.cancel()
        if released.done() and not released.cancelled():
            return True
        self.hung_up.release()
        return False

    async def _stream(self, send: Any, receive: Any, body: dict[str, Any]) -> None:
        model = body["model"]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
            }
        )
        include_usage = (body.get("stream_options") or {}).get("include_usage") is True
        usage = _usage_for(model)

        async def event(choices: list[dict[str, Any]], usage: Any = None) -> None:
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model,
                "choices": choices,
            }
            if include_usage:
                chunk["usage"] = usage
            data = b"data: " + orjson.dumps(chunk) + QUIRK_EOL.get(model, b"\n\n")
            await send({"type": "http.response.body", "body": data, "more_body": True})

        await event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for i, piece in enumerate(PIECES):
            await event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            if i == len(PIECES) - 1 and model == "fake-hold" and not await self._held(receive):
                return
            if i == 0 and model == "fake-break":
                raise ConnectionAbortedError("fake-break drops the connection mid-stream")
            if i == 0 and model == "fake-baddelta":
                await event(MALFORMED_CHOICES)
        await event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if include_usage and usage is not None:
            await event([], usage)
        if include_usage and model == "fake-twousage":
            await event([], SECOND_USAGE)
        end = {"fake-nodone": b"", "fake-unterminated": b"data: [DONE]"}.get(model, b"data: [DONE]\n\n")
        end = b"data: [DONE]" + QUIRK_EOL[model] if model in QUIRK_EOL else end
        await send({"type": "http.response.body", "body": end, "more_body": False})


# Stream quirks: valid SSE the gateway must read right, and chunks it must not trip over.
QUIRK_EOL = {"fake-cr": b"\r\r"}
SECOND_USAGE = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}  # fake-twousage's second report
MALFORMED_CHOICES = ["junk", {"index": 0, "delta": "oops", "finish_reason": None}]  # fake-baddelta


def _usage_for(model: str) -> dict[str, Any] | None:
    if model in IMPOSSIBLE_USAGE:
        return IMPOSSIBLE_USAGE[model]
    if model == "fake-nousage":
        return None
    if model == "fake-huge":
        return {"prompt_tokens": 12, "completion_tokens": 10_000_000, "total_tokens": 10_000_012}
    return CACHED_USAGE if model == "fake-cached" else USAGE


def _completion(body: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": TEXT, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
    usage = _usage_for(body["model"])
    if usage is not None:
        answer["usage"] = usage
    return answer


def native_json(model: str) -> bytes:
    choice = {"text": TEXT, "index": 0, "logprobs": None, "finish_reason": "stop"}
    body = {
        "id": "cmpl-native",
        "object": "text_completion",
        "created": 1700000000,
        "model": model,
        "choices": [choice],
        "usage": USAGE,
    }
    return orjson.dumps(body)


def native_sse(model: str, *, include_usage: bool) -> list[bytes]:
    def event(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        chunk = {
            "id": "cmpl-native",
            "object": "text_completion",
            "created": 1700000000,
            "model": model,
            "choices": choices,
        }
        if include_usage:
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    events = [event([{"text": p, "index": 0, "logprobs": None, "finish_reason": None}]) for p in PIECES]
    events.append(event([{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]))
    if include_usage:
        events.append(event([], USAGE))
    return [*events, b"data: [DONE]\n\n"]


# fake-toolcall: the answer is a tool call, and there is no usage to bill it by.
TOOL_NAME = "get_weather"
TOOL_ARGUMENT_PIECES = ['{"city":', ' "Paris"}']


async def _tool_call(send: Any, *, stream: bool) -> None:
    call: dict[str, Any] = {"id": "call_fake", "type": "function", "function": {"name": TOOL_NAME}}
    envelope: dict[str, Any] = {"id": "chatcmpl-fake", "created": 1700000000, "model": "fake-toolcall"}
    if not stream:
        call["function"]["arguments"] = "".join(TOOL_ARGUMENT_PIECES)
        message = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}
        await _json(send, 200, {**envelope, "object": "chat.completion", "choices": [choice]})
        return
    call["function"]["arguments"] = ""
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": None, "tool_calls": [{"index": 0, **call}]}]
    deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in TOOL_ARGUMENT_PIECES]
    choices: list[Any] = [[{"index": 0, "delta": delta, "finish_reason": None}] for delta in deltas]
    choices.append([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])
    head = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": head})
    for each in choices:
        chunk = {**envelope, "object": "chat.completion.chunk", "choices": each}
        await send({"type": "http.response.body", "body": b"data: " + orjson.dumps(chunk) + b"\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def _json(send: Any, status: int, payload: Any) -> None:
    await _send_bytes(send, status, orjson.dumps(payload))


async def _send_bytes(send: Any, status: int, data: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _html(send: Any, _auth: str) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    head = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(page)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": head})
    await send({"type": "http.response.body", "body": page})


async def _leaky_400(send: Any, auth: str) -> None:
    message = f"fake cannot parse this request (sent with {auth})"
    await _json(
        send, 400, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    )


async def _bad_key_401(send: Any, auth: str) -> None:
    message = f"Incorrect API key provided: {auth.removeprefix('Bearer ')}"
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
    await _json(send, 401, {"error": error})


async def _limited_429(send: Any, _auth: str) -> None:
    error = {"message": "fake is rate limited", "type": "requests", "code": "rate_limit_exceeded"}
    data = orjson.dumps({"error": error})
    head = [
        (b"content-type", b"application/json"),
        (b"retry-after", b"7"),
        (b"content-length", str(len(data)).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": head})
    await send({"type": "http.response.body", "body": data})


MISBEHAVING = {"fake-html": _html, "fake-leaky-400": _leaky_400, "fake-401": _bad_key_401, "fake-429": _limited_429}


async def _disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
