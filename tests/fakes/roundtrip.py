"""A chat model that asks for a tool and then answers with its result: `fake-roundtrip` in the fake upstream.

Without a `tool` message at the end of the conversation it answers a call of the request's own
tool: `Bash` with BASH_INPUT where the request offers a Bash tool (Claude Code does), else its
first tool with OTHER_INPUT; with one, it answers "The tool said: <the tool message's content>".
JSON or SSE (the call's arguments in pieces), with usage 20 prompt / 7 completion when asked.
"""

from __future__ import annotations

from typing import Any

import orjson

BASH_INPUT = {"command": "echo tokenbridge-bash-ok", "description": "Print a marker"}
OTHER_INPUT = {"city": "Paris"}
USAGE = {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}
ENVELOPE = {"id": "chatcmpl-roundtrip", "created": 1700000000, "model": "fake-roundtrip"}


def _tool_name(body: dict[str, Any]) -> str:
    names = [t.get("function", {}).get("name") for t in body.get("tools") or () if isinstance(t, dict)]
    return "Bash" if "Bash" in names else str(names[0] if names else "get_weather")


def _reply(body: dict[str, Any]) -> str | None:
    """The text answer to a tool result, or None where a tool call is due."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    return f"The tool said: {last.get('content')}" if last.get("role") == "tool" else None


async def answer(body: dict[str, Any], send: Any) -> None:
    text, name = _reply(body), _tool_name(body)
    arguments = orjson.dumps(BASH_INPUT if name == "Bash" else OTHER_INPUT).decode()
    usage = USAGE if body.get("stream") is not True or (body.get("stream_options") or {}).get("include_usage") else None
    if body.get("stream") is not True:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if text is None:
            message["tool_calls"] = [
                {"id": "call_rt", "type": "function", "function": {"name": name, "arguments": arguments}}
            ]
        choice = {"index": 0, "message": message, "finish_reason": "stop" if text else "tool_calls"}
        data = orjson.dumps({**ENVELOPE, "object": "chat.completion", "choices": [choice], "usage": USAGE})
        head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": data})
        return
    if text is not None:
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}, {"content": text}]
    else:
        call = {"index": 0, "id": "call_rt", "type": "function", "function": {"name": name, "arguments": ""}}
        deltas = [{"role": "assistant", "content": None, "tool_calls": [call]}]
        half = len(arguments) // 2
        deltas += [
            {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
            for piece in (arguments[:half], arguments[half:])
        ]
    chunks: list[dict[str, Any]] = [{"index": 0, "delta": d, "finish_reason": None} for d in deltas]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    events = [{**ENVELOPE, "object": "chat.completion.chunk", "choices": [c]} for c in chunks]
    events.append(
        {
            **ENVELOPE,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop" if text else "tool_calls"}],
        }
    )
    if usage is not None:
        events.append({**ENVELOPE, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    for each in events:
        await send({"type": "http.response.body", "body": b"data: " + orjson.dumps(each) + b"\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
