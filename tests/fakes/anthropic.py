"""A fake Anthropic upstream: the Messages API as Anthropic serves it, switched by model name.

Mounted in tests/fakes/upstream.py: a request whose path starts with `/v1/messages` is answered
here (the fake records it in `seen` first, headers and body, like any other). `POST /v1/messages`
answers JSON or, with `"stream": true`, SSE as Anthropic sends it (named events, `ping`s,
`message_start` with the input usage, `message_delta` with the stop reason and the cumulative
output tokens, `message_stop`); `POST /v1/messages/count_tokens` answers `{"input_tokens": N}`.

Like Anthropic, it refuses a request without `x-api-key` (or a Bearer token, which the latest SDKs
send instead: 401 `authentication_error`) or without
`anthropic-version` (400), and checks the body the way the real API does where a translation can
get it wrong: `max_tokens` required, roles only user/assistant, no unknown top-level fields (so an
OpenAI field that leaks through is seen), every `tool_result` first in its user turn and answering
a `tool_use` of the turn before.

| model              | behaviour                                                                      |
| ------------------ | ------------------------------------------------------------------------------ |
| (any other)        | answers "Hello from claude" (3 pieces), usage 12 input / 3 output, no cache    |
| claude-cached      | as above, usage 5 input + 6 cache read + 3 cache write / 3 output; its last   |
|                    | `message_delta` repeats the input counts (cumulative, as the API now sends)    |
| claude-nousage     | as above, without any usage                                                    |
| claude-tool        | a text block, then a `get_weather` tool_use (`input_json_delta` pieces),       |
|                    | stop_reason tool_use; given a tool_result, answers "The tool said: <result>"   |
| claude-break       | streams the first text piece, then drops the connection                        |
| claude-error-event | streams the first text piece, then Anthropic's `event: error` (overloaded)     |
| claude-hold        | streams the text pieces, then waits for `release()`; without stream: waits    |
| claude-slow        | waits for `release()` before its first byte, stream or not                     |
| claude-529         | 529 `overloaded_error`                                                         |
| claude-429         | 429 `rate_limit_error` with `retry-after: 7`                                   |
| claude-400         | 400 `invalid_request_error`                                                    |

`stop_sequences` holding one of the pieces ends the answer before it (stop_reason
`stop_sequence`); a `max_tokens` below the pieces' count cuts it there (stop_reason `max_tokens`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

PIECES = ["Hello", " from", " claude"]
TEXT = "".join(PIECES)
USAGE = {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 3}
CACHED_USAGE = {"input_tokens": 5, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 6, "output_tokens": 3}
COUNT_TOKENS = 17  # what count_tokens answers, whatever the body
MESSAGE_ID = "msg_fake01"
REQUEST_ID = "req_fake01"
TOOL_NAME = "get_weather"
TOOL_ID = "toolu_fake01"
TOOL_INPUT = {"city": "Paris"}
TOOL_JSON_PIECES = ["", '{"city":', ' "Paris"}']  # Anthropic opens with an empty partial_json
TOOL_PREAMBLE = "Let me look."
TOOL_OUTPUT_TOKENS = 9
FIELDS = frozenset(
    {
        "model", "messages", "system", "max_tokens", "metadata", "stop_sequences", "stream", "temperature",
        "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers",
        "context_management", "output_config", "inference_geo",
    }
)  # fmt: skip
COUNT_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"})

Held = Callable[[Any], Awaitable[bool]]  # the fake's gate: True once released, False if the client left


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": REQUEST_ID}


def event(name: str, payload: dict[str, Any]) -> bytes:
    """One SSE event as Anthropic frames it: its name, then its JSON (which repeats the name as type)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


async def answer(path: str, headers: dict[str, str], body: dict[str, Any], send: Any, receive: Any, held: Held) -> None:
    """Answer one request under /v1/messages (already recorded by the fake)."""
    refusal = _refusal(path, headers, body)
    if refusal is not None:
        await _json(send, refusal[0], error_body(*refusal[1:]))
        return
    if path == "/v1/messages/count_tokens":
        await _json(send, 200, {"input_tokens": COUNT_TOKENS})
        return
    model = body["model"]
    if model in FAILURES:
        status, kind, message = FAILURES[model]
        await _json(send, status, error_body(kind, message), retry_after=status == 429)
        return
    if model == "claude-slow" and not await held(receive):
        return
    blocks, stop_reason, stop_sequence = _content(body)
    if not body.get("stream"):
        if model == "claude-hold" and not await held(receive):
            return
        await _json(send, 200, message_json(model, blocks, stop_reason, stop_sequence))
        return
    head = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"request-id", REQUEST_ID.encode())]
    await send({"type": "http.response.start", "status": 200, "headers": head})
    for i, each in enumerate(stream_events(model, blocks, stop_reason, stop_sequence)):
        if each.startswith(b"event: message_delta") and model == "claude-hold" and not await held(receive):
            return
        await send({"type": "http.response.body", "body": each, "more_body": True})
        if i == FIRST_DELTA and model == "claude-break":
            raise ConnectionAbortedError("claude-break drops the connection mid-stream")
        if i == FIRST_DELTA and model == "claude-error-event":
            overloaded = event("error", error_body("overloaded_error", "Overloaded"))
            await send({"type": "http.response.body", "body": overloaded, "more_body": False})
            return
    await send({"type": "http.response.body", "body": b"", "more_body": False})


FAILURES = {
    "claude-529": (529, "overloaded_error", "Overloaded"),
    "claude-429": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    "claude-400": (400, "invalid_request_error", "fake claude says no"),
}
FIRST_DELTA = 3  # message_start, content_block_start, ping, then the first text delta


def _refusal(path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, str, str] | None:
    """What Anthropic would refuse this request for: (status, error type, message), or None."""
    if not headers.get("x-api-key") and not headers.get("authorization", "").startswith("Bearer "):
        return 401, "authentication_error", "x-api-key header is required"
    if not headers.get("anthropic-version"):
        return 400, "invalid_request_error", "anthropic-version: header is required"
    if path not in ("/v1/messages", "/v1/messages/count_tokens"):
        return 404, "not_found_error", f"Not found: {path}"
    allowed = COUNT_FIELDS if path.endswith("count_tokens") else FIELDS
    for name in body:
        if name not in allowed:
            return 400, "invalid_request_error", f"{name}: Extra inputs are not permitted"
    if not isinstance(body.get("model"), str):
        return 400, "invalid_request_error", "model: Field required"
    if not path.endswith("count_tokens") and not isinstance(body.get("max_tokens"), int):
        return 400, "invalid_request_error", "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return 400, "invalid_request_error", "messages: at least one message is required"
    return _turns_refusal(messages)


def _turns_refusal(messages: list[Any]) -> tuple[int, str, str] | None:
    previous_tool_ids: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return 400, "invalid_request_error", f'messages.{i}.role: Input should be "user" or "assistant"'
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        results = [b.get("tool_use_id") for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
        if results and (role != "user" or any(b.get("type") != "tool_result" for b in blocks[: len(results)])):
            return 400, "invalid_request_error", f"messages.{i}: tool_result blocks must come first in a user turn"
        unanswered = [r for r in results if r not in previous_tool_ids]
        if unanswered:
            return 400, "invalid_request_error", f"messages.{i}: unexpected tool_use_id in tool_result: {unanswered[0]}"
        previous_tool_ids = {b.get("id") for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"}
    return None


def _last_tool_result(body: dict[str, Any]) -> str | None:
    content = body["messages"][-1].get("content")
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, list):
                return "".join(b.get("text", "") for b in inner if isinstance(b, dict))
            return str(inner or "")
    return None


def _content(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str | None]:
    """The answer's content blocks (text as its pieces), stop_reason and stop_sequence."""
    model = body["model"]
    if model == "claude-tool":
        result = _last_tool_result(body)
        if result is None:
            tool = {"type": "tool_use", "id": TOOL_ID, "name": TOOL_NAME, "input": TOOL_INPUT}
            return [{"type": "text", "pieces": [TOOL_PREAMBLE]}, tool], "tool_use", None
        return [{"type": "text", "pieces": ["The tool said: ", result]}], "end_turn", None
    pieces, stop_reason, stop_sequence = list(PIECES), "end_turn", None
    for i, piece in enumerate(PIECES):
        if piece in (body.get("stop_sequences") or []):
            pieces, stop_reason, stop_sequence = PIECES[:i], "stop_sequence", piece
            break
    if body["max_tokens"] < len(pieces):
        pieces, stop_reason, stop_sequence = pieces[: body["max_tokens"]], "max_tokens", None
    return [{"type": "text", "pieces": pieces}], stop_reason, stop_sequence


def usage_for(model: str, blocks: list[dict[str, Any]]) -> dict[str, int] | None:
    if model == "claude-nousage":
        return None
    base = CACHED_USAGE if model == "claude-cached" else USAGE
    if any(b["type"] == "tool_use" for b in blocks):
        return {**base, "output_tokens": TOOL_OUTPUT_TOKENS}
    return {**base, "output_tokens": sum(len(b.get("pieces", ())) for b in blocks)}


def _whole(block: dict[str, Any]) -> dict[str, Any]:
    if block["type"] == "text":
        return {"type": "text", "text": "".join(block["pieces"])}
    return block


def message_json(
    model: str, blocks: list[dict[str, Any]], stop_reason: str, stop_sequence: str | None
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [_whole(b) for b in blocks],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
    }
    usage = usage_for(model, blocks)
    if usage is not None:
        message["usage"] = {**usage, "service_tier": "standard"}
    return message


def stream_events(model: str, blocks: list[dict[str, Any]], stop_reason: str, stop_sequence: str | None) -> list[bytes]:
    """The whole stream, event by event, as Anthropic sends it."""
    usage = usage_for(model, blocks)
    start = message_json(model, [], "", None) | {"stop_reason": None}
    if usage is not None:
        start["usage"] = {**usage, "output_tokens": 1, "service_tier": "standard"}
    events = [event("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            opened: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in block["pieces"]]
        else:
            opened = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in TOOL_JSON_PIECES]
        events.append(
            event("content_block_start", {"type": "content_block_start", "index": index, "content_block": opened})
        )
        if index == 0:
            events.append(event("ping", {"type": "ping"}))
        events += [
            event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas
        ]
        events.append(event("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
    }
    if usage is not None:
        # The cumulative output count; claude-cached also repeats the input counts, as the API now does.
        delta["usage"] = usage if model == "claude-cached" else {"output_tokens": usage["output_tokens"]}
    events.append(event("message_delta", delta))
    events.append(event("message_stop", {"type": "message_stop"}))
    return events


async def _json(send: Any, status: int, payload: Any, *, retry_after: bool = False) -> None:
    data = orjson.dumps(payload)
    head = [
        (b"content-type", b"application/json"),
        (b"request-id", REQUEST_ID.encode()),
        (b"content-length", str(len(data)).encode()),
    ]
    if retry_after:
        head.append((b"retry-after", b"7"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": data})
