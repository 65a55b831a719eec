"""Legacy completions <-> chat, as pure functions: the request one way, JSON and SSE events back.

Used by the shape stage for channels that speak only chat (`completions = "chat"`, the default).
A prompt becomes one user message; the fields chat honours are carried over; the fields it cannot
honour are refused by name rather than silently dropped. Answers come back in OpenAI's
`text_completion` shape, chunk for chunk.
"""

from __future__ import annotations

from typing import Any

import orjson

from tokenbridge.call import Call
from tokenbridge.errors import InvalidRequest
from tokenbridge.settings import Channel
from tokenbridge.upstream.client import takes_completions
from tokenbridge.upstream.sse import event_data

CARRIED_FIELDS = (
    "model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop", "presence_penalty",
    "frequency_penalty", "logit_bias", "seed", "user", "stream", "stream_options",
)  # fmt: skip
_DONE = b"[DONE]"


def _refuse(field: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"'{field}' {why}: this model is served through chat, which cannot honour it. Remove '{field}'.", param=field
    )


def prompt_text(prompt: Any) -> str:
    """The one prompt string: a string, or a list holding exactly one string."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if isinstance(prompt, list) and len(prompt) > 1 and all(isinstance(p, str) for p in prompt):
        raise InvalidRequest(
            f"'prompt' holds {len(prompt)} prompts; send one prompt per request (or one request each).",
            param="prompt",
        )
    raise InvalidRequest(
        "'prompt' must be a string (token-id prompts need a native completions channel).", param="prompt"
    )


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """A completions request as the chat request that answers it, or InvalidRequest naming the field."""
    if body.get("echo") not in (None, False):
        raise _refuse("echo", "asks to repeat the prompt in the answer")
    if body.get("suffix") not in (None, ""):
        raise _refuse("suffix", "asks for text inserted before a suffix")
    best_of = body.get("best_of")
    if best_of not in (None, 1):
        raise _refuse("best_of", "asks for several candidates to pick from")
    if body.get("logprobs") is not None:
        raise _refuse("logprobs", "asks for token log probabilities in the completions format")
    chat = {name: body[name] for name in CARRIED_FIELDS if name in body}
    chat["messages"] = [{"role": "user", "content": prompt_text(body.get("prompt"))}]
    return chat


def is_native(call: Call, channel: Channel) -> bool:
    """Does this channel take the caller's completions request as it is?"""
    return call.route == "completions" and takes_completions(channel)


def upstream_target(call: Call, channel: Channel) -> tuple[str, dict[str, Any]]:
    """Where and what to send to `channel`: (path under base_url, the request body)."""
    if call.route == "embeddings":
        return "/embeddings", call.upstream_body  # passed through as checked, on every channel
    if is_native(call, channel):
        return "/completions", call.body
    return "/chat/completions", call.upstream_body


def completion_id(chat_id: Any) -> str:
    text = chat_id if isinstance(chat_id, str) else ""
    return "cmpl-" + text.removeprefix("chatcmpl-")


def _envelope(chat: dict[str, Any], choices: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": completion_id(chat.get("id")),
        "object": "text_completion",
        "created": chat.get("created", 0),
        "model": chat.get("model", ""),
        "choices": choices,
    }
    if chat.get("system_fingerprint"):
        out["system_fingerprint"] = chat["system_fingerprint"]
    if isinstance(chat.get("usage"), dict):
        out["usage"] = chat["usage"]
    return out


def completion_response(chat: dict[str, Any]) -> dict[str, Any]:
    """`chat.completion` -> `text_completion` (usage unchanged)."""
    choices = [
        {
            "text": (c.get("message") or {}).get("content") or "",
            "index": c.get("index", 0),
            "logprobs": None,
            "finish_reason": c.get("finish_reason"),
        }
        for c in chat.get("choices") or []
    ]
    return _envelope(chat, choices)


def completion_chunk(chunk: dict[str, Any]) -> dict[str, Any] | None:
    """`chat.completion.chunk` -> `text_completion` chunk; None for a chunk with nothing to say
    (role-only or empty deltas). A usage-only chunk stays, with `choices: []`. A choice that is not
    an object is dropped, and a delta that is not an object or a content that is not a string has no
    text: an upstream's malformed chunk is no reason to break the caller's stream (the meter's
    estimate reads such chunks the same way)."""
    choices = []
    raw_choices = chunk.get("choices")
    for c in raw_choices if isinstance(raw_choices, list) else ():
        if not isinstance(c, dict):
            continue
        delta = c.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        text = content if isinstance(content, str) else ""
        finish = c.get("finish_reason")
        if text or finish is not None:
            choices.append({"text": text, "index": c.get("index", 0), "logprobs": None, "finish_reason": finish})
    if not choices and not isinstance(chunk.get("usage"), dict):
        return None
    return _envelope(chunk, choices)


def _is_chat_chunk(chunk: Any) -> bool:
    """A chat chunk by its object name, or by its shape (some compatible servers leave `object` out)."""
    if not isinstance(chunk, dict) or "error" in chunk:
        return False
    if chunk.get("object") == "chat.completion.chunk":
        return True
    choices = chunk.get("choices")
    return isinstance(choices, list) and any(isinstance(c, dict) and "delta" in c for c in choices)


def translate_event(event: bytes) -> bytes:
    """One chat SSE event -> the completions event (b"" to drop it). `[DONE]`, error events and
    anything that is not a chat chunk pass unchanged."""
    data = event_data(event)
    if not data or data == _DONE:
        return event
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return event
    if not _is_chat_chunk(chunk):
        return event
    translated = completion_chunk(chunk)
    return b"" if translated is None else b"data: " + orjson.dumps(translated) + b"\n\n"
