"""The Responses shape of a chat answer: the `response` object and its output items (pure).

responses.py translates the request; this builds what goes back, for a JSON answer whole
(`response_from_chat`) and, piece by piece, for a stream (responses_stream.py). The object echoes
the request's settings, as OpenAI's does; chat's usage becomes the Responses `usage`.
"""

from __future__ import annotations

from typing import Any

import orjson

from tokenbridge.responses import CUSTOM_INPUT, Body, Tool, ToolNames, as_object, as_text


def response_id(chat_id: Any) -> str:
    text = chat_id if isinstance(chat_id, str) and chat_id else "gateway"
    return "resp_" + text.removeprefix("chatcmpl-")


def envelope(request: Body, *, rid: str, created: Any, model: Any, status: str) -> Body:
    """A `response` object for `request`, without output and usage (the stream fills them in as they come)."""
    text = as_object(request.get("text"))
    return {
        "id": rid,
        "object": "response",
        "created_at": created if isinstance(created, int) else 0,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions") if isinstance(request.get("instructions"), str) else None,
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model if isinstance(model, str) and model else request.get("model", ""),
        "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True) is not False,
        "previous_response_id": None,
        "reasoning": None,
        "store": False,
        "temperature": request.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, **text},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": [_declared(tool) for tool in request.get("tools") or []],
        "top_p": request.get("top_p", 1.0),
        "truncation": "disabled",
        "metadata": request.get("metadata") or {},
    }


def _declared(tool: Any) -> Any:
    """A tool as a response lists it: a function with its `strict` and `parameters` said (chat got no strict)."""
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {"strict": False, "parameters": None, **tool}
    return tool


def finished(response: Body, finish_reason: Any, usage: Any) -> Body:
    """`response` as it ends: completed, or incomplete where chat stopped at the length limit or a filter."""
    reason = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(as_text(finish_reason))
    response["status"] = "incomplete" if reason else "completed"
    response["incomplete_details"] = {"reason": reason} if reason else None
    counted = response_usage(usage)
    if counted is not None:  # OpenAI's schema has no null usage: none is left out
        response["usage"] = counted
    return response


def response_usage(usage: Any) -> Body | None:
    """Chat's `usage` as the Responses `usage` (cached tokens are part of the input, reasoning of the output)."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    out_details = usage.get("completion_tokens_details")
    reasoning = out_details.get("reasoning_tokens") if isinstance(out_details, dict) else None
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached or 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning or 0},
        "total_tokens": usage.get("total_tokens", prompt + completion)
        if isinstance(prompt, int) and isinstance(completion, int)
        else 0,
    }


def message_item(item_id: str, text: str, *, status: str = "completed") -> Body:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def call_item(item_id: str, call_id: str, tool: Tool, arguments: str, *, status: str = "completed") -> Body:
    """A function call (or a custom tool's call, whose one string argument is its input) as an output item."""
    if tool.custom:
        try:
            parsed = orjson.loads(arguments) if arguments else {}
        except orjson.JSONDecodeError:
            parsed = arguments
        value = parsed.get(CUSTOM_INPUT) if isinstance(parsed, dict) else parsed
        item: Body = {"id": item_id, "type": "custom_tool_call", "status": status, "call_id": call_id,
                      "name": tool.name, "input": value if isinstance(value, str) else arguments}  # fmt: skip
    else:
        item = {"id": item_id, "type": "function_call", "status": status, "call_id": call_id,
                "name": tool.name, "arguments": arguments}  # fmt: skip
    if tool.namespace is not None:
        item["namespace"] = tool.namespace
    return item


def response_from_chat(chat: Body, request: Body) -> Body:
    """A `chat.completion` as the `response` object answering `request`."""
    rid = response_id(chat.get("id"))
    response = envelope(request, rid=rid, created=chat.get("created"), model=chat.get("model"), status="completed")
    choices = chat.get("choices")
    choice = as_object(choices[0] if isinstance(choices, list) and choices else None)
    message = as_object(choice.get("message"))
    output: list[Body] = []
    content = message.get("content")
    if isinstance(content, str) and content:
        output.append(message_item("msg_" + rid.removeprefix("resp_"), content))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        refusal = {"type": "refusal", "refusal": message["refusal"]}
        output.append({**message_item("msg_r" + rid.removeprefix("resp_"), ""), "content": [refusal]})
    names = ToolNames(request.get("tools"))
    calls = message.get("tool_calls")
    for i, call in enumerate(calls if isinstance(calls, list) else ()):
        function = as_object(as_object(call).get("function"))
        if not isinstance(function.get("name"), str):
            continue
        call_id = as_text(call.get("id"), f"call_{i}")
        arguments = as_text(function.get("arguments"))
        output.append(call_item(f"fc_{call_id}", call_id, names.tool(function["name"]), arguments))
    response["output"] = output
    return finished(response, choice.get("finish_reason"), chat.get("usage"))
