"""Anthropic Messages <-> chat, as pure functions: the request one way, the JSON answer back.

Used by the shape stage for `/v1/messages` on channels that speak only chat (openai, echo); the
stream goes back event by event in messages_stream.py. What Claude Code and the Anthropic SDKs
send must work, so nothing is refused here: what chat can carry is mapped, the rest dropped
(README, "Anthropic Messages", lists which):

- mapped: `system` (a string or text blocks) and `role: "system"` entries inside `messages` become
  system messages; text, image (base64 or URL) and document blocks (PDF as a file part, plain text as
  text); `tool_use` blocks become the assistant's `tool_calls`, `tool_result` blocks `tool` messages;
  `tools` (those with an `input_schema`), `tool_choice` (and `disable_parallel_tool_use`),
  `stop_sequences`, `max_tokens`, `temperature`, `top_p`, `stream` (asking for usage).
- dropped: `thinking` and earlier `thinking` / `redacted_thinking` blocks (their signatures mean
  nothing to another provider), `cache_control` anywhere, `metadata`, `context_management`,
  `output_config`, `top_k`, `service_tier`, `container`, `mcp_servers`, and Anthropic's server tools
  (no `input_schema`: they run at Anthropic).
"""

from __future__ import annotations

from typing import Any

import orjson

Body = dict[str, Any]

# chat's finish_reason -> Anthropic's stop_reason
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}  # fmt: skip


def _text(content: Any) -> str:
    """A string, or the text of text blocks, joined by blank lines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        return "\n\n".join(t for t in texts if isinstance(t, str))
    return ""


def _image_url(source: Any) -> str | None:
    if not isinstance(source, dict):
        return None
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        return f"data:{source.get('media_type') or 'image/png'};base64,{source['data']}"
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return str(source["url"])
    return None


def _part(block: dict[str, Any]) -> dict[str, Any] | None:
    """A user block as a chat content part; None for what chat cannot carry."""
    what = block.get("type")
    if what == "text" and isinstance(block.get("text"), str):
        return {"type": "text", "text": block["text"]}
    if what == "image" and (url := _image_url(block.get("source"))) is not None:
        return {"type": "image_url", "image_url": {"url": url}}
    if what == "document" and isinstance(source := block.get("source"), dict):
        if source.get("type") == "text" and isinstance(source.get("data"), str):
            return {"type": "text", "text": source["data"]}
        if source.get("type") == "base64" and isinstance(source.get("data"), str):
            data = f"data:{source.get('media_type') or 'application/pdf'};base64,{source['data']}"
            return {"type": "file", "file": {"filename": str(block.get("title") or "document.pdf"), "file_data": data}}
    return None


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Parts as chat content: a plain string where they are all text (every chat server takes that)."""
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def _tool_result(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A tool_result block -> the `tool` message, and the images it carried (chat's tool messages take text only)."""
    content = block.get("content")
    blocks = content if isinstance(content, list) else []
    parts = [p for b in blocks if isinstance(b, dict) and (p := _part(b)) is not None]
    text = content if isinstance(content, str) else "\n\n".join(p["text"] for p in parts if p["type"] == "text")
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    message = {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text}
    return message, [p for p in parts if p["type"] != "text"]


def _user(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return [{"role": "user", "content": _text(content)}]
    messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_result":  # answers the assistant's calls: right after them, before the rest
            tool, images = _tool_result(block)
            messages.append(tool)
            parts += images
        elif (part := _part(block)) is not None:
            parts.append(part)
    if parts or not messages:
        messages.append({"role": "user", "content": _content(parts)})
    return messages


def _assistant(content: Any) -> dict[str, Any]:
    if not isinstance(content, list):
        return {"role": "assistant", "content": _text(content)}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input") if isinstance(block.get("input"), dict) else {}).decode()
            function = {"name": str(block.get("name", "")), "arguments": arguments}
            calls.append({"id": str(block.get("id", "")), "type": "function", "function": function})
        # thinking, redacted_thinking and server tool blocks: dropped (see the module docstring)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(tools: Any) -> list[dict[str, Any]]:
    functions = []
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict) and isinstance(tool.get("input_schema"), dict):
            function = {"name": str(tool.get("name", "")), "parameters": tool["input_schema"]}
            if isinstance(tool.get("description"), str):
                function["description"] = tool["description"]
            functions.append({"type": "function", "function": function})
    return functions


def _tool_choice(choice: Any, chat: dict[str, Any]) -> None:
    if not isinstance(choice, dict):
        return
    what = choice.get("type")
    if what == "tool" and isinstance(choice.get("name"), str):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif what in ("auto", "any", "none"):
        chat["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[what]
    if choice.get("disable_parallel_tool_use") is True and chat.get("tools"):
        chat["parallel_tool_calls"] = False


def chat_request(body: Body) -> Body:
    """A Messages request as the chat request that answers it (never refuses: see the module docstring)."""
    messages: list[dict[str, Any]] = []
    system = _text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in body.get("messages") or ():
        role = message.get("role")
        if role == "assistant":
            messages.append(_assistant(message.get("content")))
        elif role == "system":
            messages.append({"role": "system", "content": _text(message.get("content"))})
        else:
            messages += _user(message.get("content"))
    chat: Body = {"model": body["model"], "messages": messages, "max_tokens": body["max_tokens"]}
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    stop = body.get("stop_sequences")
    if isinstance(stop, list) and stop:
        chat["stop"] = stop
    tools = _tools(body.get("tools"))
    if tools:
        chat["tools"] = tools
        _tool_choice(body.get("tool_choice"), chat)
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # message_delta's usage comes from it
    return chat


def message_id(chat_id: Any) -> str:
    text = chat_id if isinstance(chat_id, str) else ""
    return "msg_" + text.removeprefix("chatcmpl-")


def anthropic_usage(usage: Any) -> dict[str, int]:
    """chat's usage -> Anthropic's, whose input_tokens leave out cache reads (OpenAI's prompt_tokens include them)."""
    usage = usage if isinstance(usage, dict) else {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    prompt = prompt if isinstance(prompt, int) else 0
    cached = min(cached, prompt) if isinstance(cached, int) and cached > 0 else 0
    return {
        "input_tokens": prompt - cached,
        "output_tokens": completion if isinstance(completion, int) else 0,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's JSON arguments as the tool_use block's input ({} where they are not a JSON object)."""
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str | bytes) and arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def message_response(chat: Body) -> Body:
    """`chat.completion` -> an Anthropic `message` (the first choice)."""
    choices = chat.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = []
    if isinstance(message.get("content"), str) and message["content"]:
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            block = {"type": "tool_use", "id": str(call.get("id", "")), "name": str(function.get("name", ""))}
            content.append({**block, "input": tool_input(function.get("arguments"))})
    return {
        "id": message_id(chat.get("id")),
        "type": "message",
        "role": "assistant",
        "model": chat.get("model", ""),
        "content": content,
        "stop_reason": STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn"),
        "stop_sequence": None,
        "usage": anthropic_usage(chat.get("usage")),
    }
