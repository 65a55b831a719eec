"""The Responses API <-> chat, as pure functions: the request one way, the JSON answer back (SPEC §11).

Used by the shape stage for channels that speak only chat (`responses = "chat"`, the default);
responses_stream.py turns the chat stream into Responses events with the same builders.

- `instructions` becomes the first system message; `input` (a string, or items) becomes the chat
  messages: `message` items (roles user, assistant, system; `developer` becomes system) with text
  and image parts, `function_call` / `custom_tool_call` items as an assistant's tool calls, their
  `*_output` items as tool messages. `reasoning` items and the calls of built-in tools are dropped:
  chat has no place for them, and dropping them loses nothing the model needs to go on.
- `tools`: functions as they are; the functions of a `namespace` flattened (`ns__name`); a `custom`
  tool as a function taking one string, `input`; built-in tools (`web_search`, `tool_search`,
  `image_generation`, ...) dropped, never refused, since a client like Codex sends them to every
  model. `ToolNames` maps the chat names back, so an answer names the tool the caller declared.
- Carried: `tool_choice`, `text.format` (json_schema, json_object), `max_output_tokens` (as
  `max_tokens`, which every chat server knows), `temperature`, `top_p`, `parallel_tool_calls`,
  `user`. Ignored: `reasoning`, `include`, `store`, `prompt_cache_key`, `client_metadata`,
  `text.verbosity`, `metadata`, `truncation`, `service_tier`, `safety_identifier`. Refused, naming
  the field: `previous_response_id`, `background`, `conversation` and `item_reference` items (they
  need responses stored upstream), and what an item holds that chat cannot carry.
- The chat request always asks a stream for its usage, so `response.completed` can carry it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tokenbridge.errors import InvalidRequest

Body = dict[str, Any]

REFUSED_FIELDS = {
    "previous_response_id": "continues a response stored upstream",
    "background": "asks for a response run in the background",
    "conversation": "continues a conversation stored upstream",
}
CARRIED_FIELDS = ("model", "temperature", "top_p", "user", "stream")
NAMESPACE_JOIN = "__"
CUSTOM_INPUT = "input"  # the one parameter of the function a custom tool becomes
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
DROPPED_ITEMS = frozenset({
    "reasoning", "web_search_call", "file_search_call", "computer_call", "computer_call_output", "image_generation_call",
    "code_interpreter_call", "local_shell_call", "local_shell_call_output", "shell_call", "shell_call_output",
    "apply_patch_call", "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request", "mcp_approval_response",
    "mcp_call", "tool_search_call", "tool_search_output", "compaction",
})  # fmt: skip


def as_object(value: Any) -> Body:
    """`value` if it is a JSON object, else an empty one: what an upstream or a caller sent may be anything."""
    return value if isinstance(value, dict) else {}


def as_text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _refuse(field: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"'{field}' {why}: this model is served through chat, which cannot honour it. Remove '{field}'.", param=field
    )


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool as the caller declared it: a chat function name stands for it."""

    name: str
    custom: bool = False  # a custom tool: called with one string, answered as a `custom_tool_call`
    namespace: str | None = None


class ToolNames:
    """The caller's tools by the chat function names they were sent as."""

    __slots__ = ("by_chat_name",)

    def __init__(self, tools: Any) -> None:
        self.by_chat_name: dict[str, Tool] = {}
        for tool in tools if isinstance(tools, list) else ():
            if not isinstance(tool, dict):
                continue
            inner = tool.get("tools") if tool.get("type") == "namespace" else [tool]
            namespace = tool.get("name") if tool.get("type") == "namespace" else None
            for each in inner if isinstance(inner, list) else ():
                if isinstance(each, dict) and each.get("type") in ("function", "custom"):
                    if isinstance(each.get("name"), str):
                        declared = Tool(each["name"], each["type"] == "custom", namespace)
                        self.by_chat_name[chat_name(declared.name, namespace)] = declared

    def tool(self, name: str) -> Tool:
        return self.by_chat_name.get(name) or Tool(name)


def chat_name(name: str, namespace: Any) -> str:
    if not isinstance(namespace, str) or not namespace:
        return name
    return namespace + ("" if namespace.endswith(NAMESPACE_JOIN) else NAMESPACE_JOIN) + name


def chat_request(body: Body) -> Body:
    """A Responses request as the chat request that answers it, or InvalidRequest naming the field."""
    for field, why in REFUSED_FIELDS.items():
        if body.get(field) not in (None, False):
            raise _refuse(field, why)
    chat: Body = {name: body[name] for name in CARRIED_FIELDS if body.get(name) is not None}
    messages: list[Body] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    messages += input_messages(body.get("input"))
    chat["messages"] = messages
    if isinstance(body.get("max_output_tokens"), int):
        chat["max_tokens"] = body["max_output_tokens"]
    tools = chat_tools(body.get("tools"))
    if tools:
        chat["tools"] = tools
        choice = chat_tool_choice(body.get("tool_choice"))
        if choice is not None:
            chat["tool_choice"] = choice
        if isinstance(body.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    text = body.get("text")
    response_format = _response_format(text.get("format") if isinstance(text, dict) else None)
    if response_format is not None:
        chat["response_format"] = response_format
    if chat.get("stream") is True:
        chat["stream_options"] = {"include_usage": True}
    return chat


def input_messages(items: Any) -> list[Body]:
    """`input` as chat messages; consecutive tool calls join one assistant message."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[Body] = []
    for i, item in enumerate(items if isinstance(items, list) else ()):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{where}' must be an object.", param=where)
        item_type = item.get("type", "message")
        if item_type == "message":
            messages.append(_message(item, where))
        elif item_type in ("function_call", "custom_tool_call"):
            call = _tool_call(item, where)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            elif last is not None and last["role"] == "assistant" and isinstance(last.get("content"), str | None):
                last["tool_calls"] = [call]
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif item_type in ("function_call_output", "custom_tool_call_output"):
            messages.append({"role": "tool", "tool_call_id": _string(item, "call_id", where),
                             "content": _output_text(item.get("output"), f"{where}.output")})  # fmt: skip
        elif item_type == "item_reference":
            raise _refuse(where, "refers to an item stored upstream")
        elif item_type not in DROPPED_ITEMS:
            raise InvalidRequest(f"'{where}.type' {item_type!r} is not an input item this gateway knows.", param=where)
    return messages


def _string(item: Body, field: str, where: str) -> str:
    value = item.get(field)
    if not isinstance(value, str):
        raise InvalidRequest(f"'{where}.{field}' must be a string.", param=f"{where}.{field}")
    return value


def _message(item: Body, where: str) -> Body:
    role = ROLES.get(item.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise InvalidRequest(f"'{where}.role' must be one of user, assistant, system, developer.", param=where)
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}.content' must be a string or an array of parts.", param=f"{where}.content")
    parts = [_part(part, f"{where}.content[{j}]") for j, part in enumerate(content)]
    if role != "user":  # only a user's message takes images: the others are text
        return {"role": role, "content": "".join(p.get("text", "") for p in parts)}
    return {"role": role, "content": parts}


def _part(part: Any, where: str) -> Body:
    part = as_object(part)
    part_type = part.get("type")
    if part_type in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if part_type == "refusal" and isinstance(part.get("refusal"), str):
        return {"type": "text", "text": part["refusal"]}
    if part_type == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise _refuse(f"{where}.file_id", "names an image stored upstream (send its image_url)")
        return {"type": "image_url", "image_url": {"url": url, "detail": part.get("detail") or "auto"}}
    if part_type == "input_file":
        file = {name: part[name] for name in ("file_data", "file_id", "filename") if isinstance(part.get(name), str)}
        if "file_url" in part or not file:
            raise _refuse(f"{where}.file_url", "names a file by URL (send its file_data)")
        return {"type": "file", "file": file}
    raise InvalidRequest(f"'{where}' is not a content part chat can carry (text, image, file).", param=where)


def _tool_call(item: Body, where: str) -> Body:
    name = chat_name(_string(item, "name", where), item.get("namespace"))
    if item["type"] == "custom_tool_call":
        arguments = orjson.dumps({CUSTOM_INPUT: _string(item, "input", where)}).decode()
    else:
        arguments = _string(item, "arguments", where)
    return {
        "id": _string(item, "call_id", where),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def _output_text(output: Any, where: str) -> str | list[Body]:
    if isinstance(output, str):
        return output
    if isinstance(output, list):  # content parts: chat's tool message takes text parts
        return "".join(p["text"] for p in output if isinstance(p, dict) and isinstance(p.get("text"), str))
    raise InvalidRequest(f"'{where}' must be a string or an array of parts.", param=where)


def chat_tools(tools: Any) -> list[Body]:
    """Function and custom tools (namespaces flattened) as chat functions; built-in tools dropped."""
    out: list[Body] = []
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict):
            continue
        if tool.get("type") == "namespace":
            inner = tool.get("tools")
            out += (
                [_function(t, tool.get("name")) for t in inner if isinstance(t, dict)]
                if isinstance(inner, list)
                else []
            )
        else:
            out.append(_function(tool, None))
    return [tool for tool in out if tool]


def _function(tool: Body, namespace: Any) -> Body:
    if not isinstance(tool.get("name"), str) or tool.get("type") not in ("function", "custom"):
        return {}  # a built-in tool: chat has none
    function: Body = {"name": chat_name(tool["name"], namespace)}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    if tool["type"] == "custom":
        function["parameters"] = {
            "type": "object",
            "properties": {CUSTOM_INPUT: {"type": "string", "description": "The tool's whole input, as free text."}},
            "required": [CUSTOM_INPUT],
            "additionalProperties": False,
        }
    else:
        function["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def chat_tool_choice(choice: Any) -> Any:
    """`tool_choice` in chat's shape; None (leave it out) for a built-in tool's, whose tool was dropped."""
    if choice in ("auto", "none", "required"):
        return choice
    if not isinstance(choice, dict):
        return None
    if choice.get("type") in ("function", "custom") and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": chat_name(choice["name"], choice.get("namespace"))}}
    if choice.get("type") == "allowed_tools" and choice.get("mode") in ("auto", "required"):
        return choice["mode"]
    return None


def _response_format(fmt: Any) -> Body | None:
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {name: fmt[name] for name in ("name", "schema", "strict", "description") if name in fmt}
        return {"type": "json_schema", "json_schema": schema}
    return None
