"""Offline token counts, for when an upstream gives no usage or a caller leaves before it arrives.

tiktoken with the BPE files shipped in `tokenbridge/bpe/` (it would otherwise download them at run
time, which fails without internet). Encodings are loaded lazily, on the first estimate, in a
worker thread: most gateways never need one, and an encoding costs tens of MB of memory.
Unknown models fall back to o200k_base.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import tiktoken
from tiktoken.model import encoding_name_for_model

BPE_DIR = Path(__file__).with_name("bpe")
FALLBACK_ENCODING = "o200k_base"
SHIPPED_ENCODINGS = ("o200k_base", "cl100k_base")
# OpenAI's counting for chat prompts: each message costs its framing, the reply its priming.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

_load_lock = threading.Lock()


def encoding_name(model: str) -> str:
    try:
        name = encoding_name_for_model(model)
    except KeyError:
        return FALLBACK_ENCODING
    return name if name in SHIPPED_ENCODINGS else FALLBACK_ENCODING


@cache
def encoding(name: str) -> tiktoken.Encoding:
    """Load a shipped encoding, never touching the network (tiktoken verifies the file's sha256)."""
    with _load_lock:  # TIKTOKEN_CACHE_DIR is process-wide: set it only for the load, and put it back
        saved = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(BPE_DIR)
        try:
            return tiktoken.get_encoding(name)
        finally:
            if saved is None:
                del os.environ["TIKTOKEN_CACHE_DIR"]
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = saved


def count(text: str, model: str) -> int:
    return len(encoding(encoding_name(model)).encode(text, disallowed_special=()))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def prompt_tokens(body: dict[str, Any], model: str) -> int:
    """Prompt tokens of a chat request (messages) or a native completions request (prompt)."""
    if "messages" not in body:
        prompt = body.get("prompt")
        texts = [prompt] if isinstance(prompt, str) else [p for p in prompt or [] if isinstance(p, str)]
        return sum(count(t, model) for t in texts)
    total = REPLY_PRIMING_TOKENS
    for message in body["messages"]:
        if not isinstance(message, dict):
            continue
        total += TOKENS_PER_MESSAGE + count(str(message.get("role", "")), model)
        total += count(_text(message.get("content")), model)
        if isinstance(message.get("name"), str):
            total += TOKENS_PER_NAME + count(message["name"], model)
    return total


def completion_tokens(texts: Iterable[str], model: str) -> int:
    return count("".join(texts), model)


async def estimate(body: dict[str, Any], delivered: list[str], model: str) -> tuple[int, int]:
    """(prompt, completion) tokens, counted in a worker thread: loading and encoding are CPU work."""
    return await asyncio.to_thread(lambda: (prompt_tokens(body, model), completion_tokens(delivered, model)))
