"""Chat Completions over Anthropic's Messages API, as pure functions: the request one way, the JSON answer back.

Used by the shape stage for `/v1/chat/completions` on a channel that speaks the messages wire (an
`anthropic` channel), so OpenAI clients can use Claude models; the stream back is
chat_messages_stream.py. System and developer messages become `system`; user and assistant text
and images become content blocks; assistant `tool_calls` become `tool_use` blocks and `tool`
messages `tool_result` blocks (consecutive ones merged into the one user turn Anthropic wants);
tools, `tool_choice`, `stop`, `max_tokens` (Anthropic requires one: the adapter
gives the server's `default_max_tokens`, the limit the hold takes), `temperature`, `top_p`, `user` and `stream` are
mapped. A field Messages cannot honour is refused by name (REFUSED); sampling hints it has no
counterpart for are left out (DROPPED), and so is anything unknown, as the completions adapter does.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from tokenbridge.errors import InvalidRequest

Body = dict[str, Any]

# Fields whose answer Messages cannot give: refused, with why, unless set to their neutral value.
REFUSED: dict[str, tuple[tuple[Any, ...], str]] = {
    "n": ((None, 1), "asks for several choices"),
    "logprobs": ((None, False), "asks for token log probabilities"),
    "top_logprobs": ((None, 0), "asks for token log probabilities"),
    "logit_bias": ((None, {}), "asks to bias tokens"),
    "audio": ((None,), "asks for audio output"),
    "prediction": ((None,), "asks for predicted outputs"),
    "functions": ((None, []), "is the legacy form of 'tools'"),
    "function_call": ((None,), "is the legacy form of 'tool_choice'"),
    "web_search_options": ((None,), "asks for OpenAI's web search"),
}
# Accepted and left out: hints with no Messages counterpart that change nothing a caller relies on.
DROPPED = (
    "presence_penalty", "frequency_penalty", "seed", "store", "metadata", "service_tier", "reasoning_effort",
    "prompt_cache_key", "safety_identifier", "stream_options", "parallel_tool_calls", "verbosity",
)  # fmt: skip
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _refuse(field: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"'{field}' {why}: this model is served through Anthropic's Messages API, which cannot honour it. "
        f"Remove '{field}'.",
        param=field,
    )


def _bad(field: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"'{field}' {why}.", param=field)


def messages_request(body: Body) -> Body:
    """A chat request as the Messages request that answers it, or InvalidRequest naming the field.

    Anthropic requires `max_tokens`: the adapter gives a body without a limit the server's default
    first (adapters.py, `limit_required`), so one is always there."""
    for field, (neutral, why) in REFUSED.items():
        if field in body and body[field] not in neutral:
            raise _refuse(field, why)
    modalities = body.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        raise _refuse("modalities", "asks for output other than text")
    response_format = body.get("response_format")
    if response_format is not None and (not isinstance(response_format, dict) or response_format.get("type") != "text"):
        raise _refuse("response_format", "asks for JSON output")
    system, turns = _turns(body["messages"])
    out: Body = {"model": body["model"], "messages": turns}
    if system:
        out["system"] = system
    limits = [v for v in (body.get("max_completion_tokens"), body.get("max_tokens")) if v]
    if not limits:
        raise _bad("max_tokens", "is required by Anthropic's Messages API")
    out["max_tokens"] = min(limits)  # the tighter bound; the hold reckons with the larger (quota.py)
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if stop is not None:
        out["stop_sequences"] = _stop_sequences(stop)
    if isinstance(body.get("user"), str) and body["user"]:
        out["metadata"] = {"user_id": body["user"]}
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        choice = _tool_choice(body.get("tool_choice"), parallel=body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    if body.get("stream") is True:
        out["stream"] = True
    return out


def _stop_sequences(stop: Any) -> list[str]:
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _bad("stop", "must be a string or an array of strings")
    return stops


def _text_of(content: Any, field: str) -> str:
    """A system/developer/tool message's content: a string, or text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(texts) == len(content) and all(isinstance(t, str) for t in texts):
            return "".join(t for t in texts if isinstance(t, str))
    raise _bad(field, "must be a string or an array of text parts")


def _turns(messages: list[Any]) -> tuple[list[Body], list[Body]]:
    """Chat messages -> (system blocks, Messages turns), consecutive turns of one role merged."""
    system: list[Body] = []
    turns: list[Body] = []

    def add(role: str, blocks: list[Body]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks  # a tool result and the user's words after it: one user turn
        else:
            turns.append({"role": role, "content": blocks})

    for i, message in enumerate(messages):
        role, content, field = message.get("role"), message.get("content"), f"messages[{i}]"
        if role in ("system", "developer"):
            text = _text_of(content, f"{field}.content")
            if text:
                system.append({"type": "text", "text": text})
        elif role == "user":
            add("user", _user_blocks(content, field))
        elif role == "assistant":
            add("assistant", _assistant_blocks(message, field))
        elif role == "tool":
            tool_call_id = message.get("tool_call_id")
            if not isinstance(tool_call_id, str) or not tool_call_id:
                raise _bad(f"{field}.tool_call_id", "is required on a tool message")
            result = {
                "type": "tool_result",
                "tool_use_id": tool_call_id,
                "content": _text_of(content, f"{field}.content"),
            }
            add("user", [result])
        elif role == "function":
            raise _refuse(f"{field}.role", "'function' is the legacy form of 'tool'")
        else:
            raise _bad(f"{field}.role", "must be one of system, developer, user, assistant, tool")
    if not turns:
        raise _bad("messages", "must hold at least one user or assistant message")
    return system, turns


def _user_blocks(content: Any, field: str) -> list[Body]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad(f"{field}.content", "must be a string or an array of content parts")
    blocks = []
    for j, part in enumerate(content):
        part_type = part.get("type") if isinstance(part, dict) else None
        where = f"{field}.content[{j}]"
        if part_type == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif part_type == "image_url":
            blocks.append(_image(part.get("image_url"), where))
        elif part_type == "file":
            blocks.append(_document(part.get("file"), where))
        elif part_type == "input_audio":
            raise _refuse(where, "is audio input")
        else:
            raise _bad(where, "must be a text, image_url or file part")
    return blocks


def _data_url(url: str, where: str) -> tuple[str, str]:
    """`data:<media type>;base64,<data>` -> (media type, data)."""
    head, comma, data = url.partition(",")
    media_type, _, encoding = head.removeprefix("data:").partition(";")
    if not comma or encoding != "base64" or not media_type:
        raise _bad(where, "must be a base64 data URL (data:<type>;base64,...)")
    return media_type, data


def _image(image: Any, where: str) -> Body:
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str) or not url:
        raise _bad(f"{where}.image_url.url", "is required")
    if url.startswith("data:"):
        media_type, data = _data_url(url, f"{where}.image_url.url")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad(f"{where}.image_url.url", "must be an http(s) URL or a data URL")


def _document(file: Any, where: str) -> Body:
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str):
        raise _refuse(f"{where}.file", "names an uploaded file (only inline 'file_data' can be sent)")
    media_type, data = _data_url(data_url, f"{where}.file.file_data")
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _assistant_blocks(message: Body, field: str) -> list[Body]:
    content = message.get("content")
    blocks: list[Body] = []
    if isinstance(content, str):
        blocks += [{"type": "text", "text": content}] if content else []
    elif isinstance(content, list):
        for j, part in enumerate(content):
            text = part.get("text") if isinstance(part, dict) else None
            text = part.get("refusal") if isinstance(part, dict) and part.get("type") == "refusal" else text
            if not isinstance(text, str):
                raise _bad(f"{field}.content[{j}]", "must be a text or refusal part")
            blocks += [{"type": "text", "text": text}] if text else []
    elif content is not None:
        raise _bad(f"{field}.content", "must be a string, an array of text parts or null")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _bad(f"{field}.tool_calls", "must be an array")
    for j, tool_call in enumerate(calls):
        blocks.append(_tool_use(tool_call, f"{field}.tool_calls[{j}]"))
    return blocks


def _tool_use(tool_call: Any, where: str) -> Body:
    function = tool_call.get("function") if isinstance(tool_call, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not isinstance(tool_call.get("id"), str):
        raise _bad(where, "must be a function tool call with an id and a function name")
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _bad(f"{where}.function.arguments", "must be a JSON object, as a string")
    return {"type": "tool_use", "id": tool_call["id"], "name": name, "input": parsed}


def _tools(tools: Any) -> list[Body]:
    if not isinstance(tools, list):
        raise _bad("tools", "must be an array")
    out = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _bad(f"tools[{i}]", "must be a function tool with a name")
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        entry: Body = {"name": function["name"], "input_schema": schema}
        if isinstance(function.get("description"), str):
            entry["description"] = function["description"]
        out.append(entry)
    return out


def _tool_choice(choice: Any, *, parallel: Any) -> Body | None:
    """OpenAI's tool_choice (and parallel_tool_calls) -> Anthropic's; None to leave it to the model."""
    if choice is None or choice == "auto":
        out: Body = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise _bad("tool_choice", "must be 'auto', 'none', 'required' or a named function")
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    elif choice is None:
        return None
    return out


def chat_usage(usage: Any) -> Body | None:
    """Anthropic's usage -> OpenAI's: prompt_tokens counts every input token, cache reads and writes included."""
    if not isinstance(usage, dict) or not isinstance(usage.get("output_tokens"), int):
        return None
    read = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + read + (usage.get("cache_creation_input_tokens") or 0)
    completion = usage["output_tokens"]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read},
    }


def chat_id(message_id: Any) -> str:
    return "chatcmpl-" + (message_id.removeprefix("msg_") if isinstance(message_id, str) else "")


def tool_call(block: Body) -> Body:
    arguments = orjson.dumps(block.get("input") or {}).decode()
    return {
        "id": block.get("id", ""),
        "type": "function",
        "function": {"name": block.get("name", ""), "arguments": arguments},
    }


def chat_response(message: Body) -> Body:
    """An Anthropic `message` -> `chat.completion`."""
    blocks = [b for b in message.get("content") or [] if isinstance(b, dict)]
    text = "".join(b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str))
    calls = [tool_call(b) for b in blocks if b.get("type") == "tool_use"]
    reply: Body = {"role": "assistant", "content": text or (None if calls else ""), "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    choice = {
        "index": 0,
        "message": reply,
        "logprobs": None,
        "finish_reason": finish_reason(message.get("stop_reason")),
    }
    out: Body = {
        "id": chat_id(message.get("id")),
        "object": "chat.completion",
        "created": int(time.time()),  # Messages answers carry no time: when the gateway translated it
        "model": message.get("model", ""),
        "choices": [choice],
    }
    usage = chat_usage(message.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return out


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
