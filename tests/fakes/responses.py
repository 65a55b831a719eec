"""The fake upstream's Responses parts: a native `/v1/responses` server, and chat models for tool round trips.

On `/v1/responses` (a native Responses upstream), switched by model name:

| model                | behaviour                                                                   |
| -------------------- | --------------------------------------------------------------------------- |
| (any other)          | "Hello from fake" as a `response` (JSON) or its event stream; usage 12 in (8 cached) / 3 out |
| fake-resp-nousage    | as above, with `usage: null` in the answer and in `response.completed`       |
| fake-resp-incomplete | as above, ending with `response.incomplete` (max_output_tokens)             |
| fake-resp-cut        | streams `response.created` and the first text delta, then drops the connection |
| fake-resp-hold       | streams up to the first text delta, then waits for `release()` (or a hang-up);|
|                      | without stream: waits, then answers JSON                                    |
| fake-resp-tool       | answers a `get_weather` function call, its arguments streamed in two pieces  |

On `/v1/chat/completions`, model `fake-tools` plays an agent's round trip: with a `tool` message in
the conversation it answers `TOOL_DONE` + that message's content; else, if the last user message
asks for a "tool", it calls the request's first function (`exec_command` gets `{"cmd": CODEX_COMMAND}`,
any other `TOOL_ARGUMENTS`), its arguments streamed in pieces; else it answers "Hello from fake".
Every answer has usage 12 / 3, streamed too when asked.
"""

from __future__ import annotations

from typing import Any

import orjson

PIECES = ["Hello", " from", " fake"]
TEXT = "".join(PIECES)
RESPONSE_USAGE = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
    "output_tokens": 3,
    "output_tokens_details": {"reasoning_tokens": 1},
    "total_tokens": 15,
}
CHAT_USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
TOOL_ARGUMENTS = '{"city": "Paris"}'
CODEX_COMMAND = "echo tokenbridge-codex-ran"
TOOL_DONE = "The tool said: "
RID, MID, FID = "resp_fake", "msg_fake", "fc_fake"


def _response(model: str, status: str, output: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
    """A `response` object; without usage where there is none (OpenAI's schema has no null usage)."""
    return {
        "id": RID, "object": "response", "created_at": 1700000000, "status": status, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": None, "model": model, "output": output, "parallel_tool_calls": True, "metadata": {},
        "tool_choice": "auto", "tools": [], "temperature": 1.0, "top_p": 1.0, **({"usage": usage} if usage else {}),
    }  # fmt: skip


def _message(text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"id": MID, "type": "message", "status": status, "role": "assistant", "content": [part] if text else []}


def _function_call(arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"id": FID, "type": "function_call", "status": status, "call_id": "call_fake", "name": "get_weather",
            "arguments": arguments}  # fmt: skip


def native_answer(model: str) -> dict[str, Any]:
    """The JSON `response` of the native fake."""
    usage = None if model == "fake-resp-nousage" else RESPONSE_USAGE
    output = [_function_call(TOOL_ARGUMENTS)] if model == "fake-resp-tool" else [_message(TEXT)]
    return _response(model, "incomplete" if model == "fake-resp-incomplete" else "completed", output, usage)


def native_events(model: str) -> list[dict[str, Any]]:
    """The events of the native fake's stream, in order (each but the last few is a whole answer's start)."""
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response(model, "in_progress", [], None)},
        {"type": "response.in_progress", "response": _response(model, "in_progress", [], None)},
    ]
    if model == "fake-resp-tool":
        pieces = ['{"city":', ' "Paris"}']
        events.append(
            {"type": "response.output_item.added", "output_index": 0, "item": _function_call("", "in_progress")}
        )
        events += [{"type": "response.function_call_arguments.delta", "item_id": FID, "output_index": 0, "delta": p}
                   for p in pieces]  # fmt: skip
        events.append({"type": "response.function_call_arguments.done", "item_id": FID, "output_index": 0,
                       "name": "get_weather", "arguments": TOOL_ARGUMENTS})  # fmt: skip
        events.append({"type": "response.output_item.done", "output_index": 0, "item": _function_call(TOOL_ARGUMENTS)})
    else:
        place = {"item_id": MID, "output_index": 0, "content_index": 0}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events.append({"type": "response.output_item.added", "output_index": 0, "item": _message("", "in_progress")})
        events.append({"type": "response.content_part.added", **place, "part": part})
        events += [{"type": "response.output_text.delta", **place, "delta": p, "logprobs": []} for p in PIECES]
        events.append({"type": "response.output_text.done", **place, "text": TEXT, "logprobs": []})
        events.append({"type": "response.content_part.done", **place, "part": {**part, "text": TEXT}})
        events.append({"type": "response.output_item.done", "output_index": 0, "item": _message(TEXT)})
    answer = native_answer(model)
    end = "response.incomplete" if answer["status"] == "incomplete" else "response.completed"
    events.append({"type": end, "response": answer})
    return [{**event, "sequence_number": i} for i, event in enumerate(events)]


def sse(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


FIRST_DELTA = 4  # the index of the first text delta in native_events: the cut and the hold come after it


async def serve_native(fake: Any, send: Any, receive: Any, body: dict[str, Any]) -> None:
    model = body.get("model", "")
    if not body.get("stream"):
        if model == "fake-resp-hold" and not await fake._held(receive):
            return
        data = orjson.dumps(native_answer(model))
        head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": data})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for i, event in enumerate(native_events(model)):
        await send({"type": "http.response.body", "body": sse(event), "more_body": True})
        if i == FIRST_DELTA and model == "fake-resp-cut":
            raise ConnectionAbortedError("fake-resp-cut drops the connection mid-stream")
        if i == FIRST_DELTA and model == "fake-resp-hold" and not await fake._held(receive):
            return
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content if isinstance(content, str) else ""
    return ""


def tool_round(body: dict[str, Any]) -> dict[str, Any]:
    """fake-tools' answer as one chat message: text, or a call of the request's first function."""
    messages = body.get("messages") or []
    done = [m for m in messages if isinstance(m, dict) and m.get("role") == "tool"]
    if done:
        return {"role": "assistant", "content": TOOL_DONE + str(done[-1].get("content"))}
    tools = body.get("tools") or []
    if "tool" not in _last_user_text(messages) or not tools:
        return {"role": "assistant", "content": TEXT}
    name = tools[0]["function"]["name"]
    arguments = orjson.dumps({"cmd": CODEX_COMMAND}).decode() if name == "exec_command" else TOOL_ARGUMENTS
    call = {"id": "call_round", "type": "function", "function": {"name": name, "arguments": arguments}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


async def serve_tools(send: Any, body: dict[str, Any]) -> None:
    message = tool_round(body)
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    envelope = {"id": "chatcmpl-tools", "created": 1700000000, "model": body.get("model")}
    if not body.get("stream"):
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        data = orjson.dumps({**envelope, "object": "chat.completion", "choices": [choice], "usage": CHAT_USAGE})
        head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": data})
        return
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    if message.get("tool_calls"):
        call = message["tool_calls"][0]
        arguments = call["function"]["arguments"]
        head_call = {"index": 0, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"],
                                                                                       "arguments": ""}}  # fmt: skip
        deltas.append({"tool_calls": [head_call]})
        half = len(arguments) // 2
        deltas += [
            {"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in (arguments[:half], arguments[half:])
        ]
    else:
        deltas += [{"content": piece} for piece in (message["content"][:4], message["content"][4:])]
    chunks = [[{"index": 0, "delta": d, "finish_reason": None}] for d in deltas]
    chunks.append([{"index": 0, "delta": {}, "finish_reason": finish}])
    include_usage = (body.get("stream_options") or {}).get("include_usage") is True
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for choices in chunks:
        chunk = {**envelope, "object": "chat.completion.chunk", "choices": choices}
        await send({"type": "http.response.body", "body": b"data: " + orjson.dumps(chunk) + b"\n\n", "more_body": True})
    if include_usage:
        chunk = {**envelope, "object": "chat.completion.chunk", "choices": [], "usage": CHAT_USAGE}
        await send({"type": "http.response.body", "body": b"data: " + orjson.dumps(chunk) + b"\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
