"""Offline token counts, for when an upstream gives no usage or a caller leaves before it arrives.

tiktoken with the BPE files shipped in `tokenbridge/bpe/`, loaded straight from there
(`load_tiktoken_bpe` on the file, checked against the sha256 tiktoken itself expects, then
`tiktoken.Encoding`): `tiktoken.get_encoding` would download them at run time, which fails without
internet. Encodings are loaded lazily, on the first estimate, in a worker thread: most gateways
never need one, and an encoding costs tens of MB of memory.
Unknown models fall back to o200k_base.

Beyond message text (Anthropic's system prompt, tool_use and tool_result blocks included), a prompt counts its tool definitions (`tools`, legacy `functions`) as their
JSON text (OpenAI renders them more tersely, so this errs a little high), each assistant tool call
as its function's name and arguments, and each image part by OpenAI's tile formula. An answer
that is a tool call counts its name and arguments as completion text (the meter's `answer_texts`).
Audio and file parts are not counted: their tokens cannot be told without decoding them.
An embeddings request counts its input: each string's tokens, each array of token ids by its length.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any, Literal

import orjson
import tiktoken
from tiktoken.load import load_tiktoken_bpe
from tiktoken.model import encoding_name_for_model

from tokenbridge.embeddings import inputs

BPE_DIR = Path(__file__).with_name("bpe")
FALLBACK_ENCODING = "o200k_base"
_ENDOFTEXT, _ENDOFPROMPT = "<|endoftext|>", "<|endofprompt|>"
_FIM_PREFIX, _FIM_MIDDLE, _FIM_SUFFIX = "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"


@dataclass(frozen=True, slots=True)
class Shipped:
    """An encoding as tiktoken_ext/openai_public.py defines it (MIT), its ranks in `bpe/<name>.tiktoken`."""

    sha256: str  # of the ranks file: tiktoken's own expected_hash, so a wrong byte fails the load
    pat_str: str
    special_tokens: dict[str, int]


SHIPPED_ENCODINGS = {
    "o200k_base": Shipped(
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join((
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        )),
        special_tokens={_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    ),
    "cl100k_base": Shipped(
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        special_tokens={
            _ENDOFTEXT: 100257, _FIM_PREFIX: 100258, _FIM_MIDDLE: 100259, _FIM_SUFFIX: 100260, _ENDOFPROMPT: 100276,
        },
    ),
}  # fmt: skip

# OpenAI's counting for chat prompts: each message costs its framing, the reply its priming.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

# OpenAI's published image cost (platform.openai.com/docs/guides/images-vision, "Calculating costs"):
# an image is scaled to fit 2048×2048, then its short side to 768 px, and billed a base plus a price
# per 512-px tile, so 8 tiles at most (2048×768); `detail: low` is the base alone. The size is read
# from the header of a data URL's PNG, GIF, WebP or JPEG (`image_size`); an image whose size cannot
# be told (a web URL) counts the 8 tiles. (base, per tile) by model prefix, the longest prefix that
# matches; other models (gpt-4o, gpt-4.1, gpt-4.5, ...) as gpt-4o.
IMAGE_TOKENS = {"gpt-4o-mini": (2833, 5667), "o1": (75, 150), "o3": (75, 150), "computer-use-preview": (65, 129)}
DEFAULT_IMAGE_TOKENS = (85, 170)
IMAGE_MAX_TILES = 8
# The most one image part costs on any model above (gpt-4o-mini: 48,169), and more than models that
# count 32-px patches bill (at most 1,536 patches × 2.46). The hold's bound for each image part.
IMAGE_PART_MAX_TOKENS = max(b + IMAGE_MAX_TILES * t for b, t in [*IMAGE_TOKENS.values(), DEFAULT_IMAGE_TOKENS])
IMAGE_FIT_PX, IMAGE_SHORT_SIDE_PX, IMAGE_TILE_PX = 2048, 768, 512
IMAGE_HEADER_CHARS = 1 << 18  # base64 read for a size: a JPEG's frame header may follow ~190 KB of metadata
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn markers (not DHT, JPG, DAC)


def encoding_name(model: str) -> str:
    try:
        name = encoding_name_for_model(model)
    except KeyError:
        return FALLBACK_ENCODING
    return name if name in SHIPPED_ENCODINGS else FALLBACK_ENCODING


log = logging.getLogger("tokenbridge")
_load_lock = threading.Lock()


def encoding(name: str) -> tiktoken.Encoding:
    """A shipped encoding, loaded once. The first estimates may start together, each in a worker
    thread; `cache` alone would let each of them load its own copy (seconds of CPU and ~100 MB
    apiece), so they wait for the one load instead."""
    with _load_lock:
        return load_encoding(name)


@cache
def load_encoding(name: str) -> tiktoken.Encoding:
    """Load a shipped encoding from its file, never touching the network or the environment."""
    shipped = SHIPPED_ENCODINGS[name]
    ranks = load_tiktoken_bpe(str(BPE_DIR / f"{name}.tiktoken"), expected_hash=shipped.sha256)
    loaded = tiktoken.Encoding(
        name, pat_str=shipped.pat_str, mergeable_ranks=ranks, special_tokens=shipped.special_tokens
    )
    # it explains the memory growing by tens of MB (bench/run.py looks for this line)
    log.info("loaded the %s tokenizer for offline token estimates (it stays in memory)", name)
    return loaded


def count(text: str, model: str) -> int:
    return len(encoding(encoding_name(model)).encode(text, disallowed_special=()))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_part_text(p) for p in content if isinstance(p, dict))
    return ""


def _part_text(part: dict[str, Any]) -> str:
    """A content part's text; Anthropic's tool_use (name and input) and tool_result (its content) blocks too."""
    if isinstance(part.get("text"), str):
        return str(part["text"])
    if part.get("type") == "tool_use":
        return str(part.get("name", "")) + orjson.dumps(part.get("input")).decode()
    if part.get("type") == "tool_result":
        return _text(part.get("content"))
    return ""


def tool_call_texts(message: Any) -> list[str]:
    """The function names and arguments of a message's (or a stream delta's) tool calls, legacy `function_call` too."""
    if not isinstance(message, dict):
        return []
    calls = message.get("tool_calls")
    functions = [c.get("function") for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []
    functions.append(message.get("function_call"))
    return [
        text
        for function in functions
        if isinstance(function, dict)
        for text in (function.get("name"), function.get("arguments"))
        if isinstance(text, str)
    ]


def image_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The image content parts of a chat request's messages (`image_url`) or a Responses request's input (`input_image`)."""
    messages = body.get("messages", body.get("input"))
    return [
        part
        for message in (messages if isinstance(messages, list) else ())
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") in ("image_url", "input_image")
    ]


def anthropic_images(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The `image` blocks of a Messages request's messages, those inside tool results too."""
    found: list[dict[str, Any]] = []

    def walk(blocks: Any) -> None:
        for block in blocks if isinstance(blocks, list) else ():
            if isinstance(block, dict) and block.get("type") == "image" and isinstance(block.get("source"), dict):
                found.append(block)
            elif isinstance(block, dict) and block.get("type") == "tool_result":
                walk(block.get("content"))

    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if isinstance(message, dict):
            walk(message.get("content"))
    return found


def anthropic_image_source(block: dict[str, Any]) -> str:
    """What an image block's source carries in the body (its base64 data or its URL), for the hold's bound."""
    source = block["source"]
    value = source.get("data") if source.get("type") == "base64" else source.get("url")
    return value if isinstance(value, str) else ""


def _item_texts(item: dict[str, Any]) -> list[str]:
    """What a Responses input item says: a message's text, a call's name and arguments (or input), a call's output."""
    texts = [_text(item.get("content")), _text(item.get("output"))]
    return texts + [item[name] for name in ("name", "arguments", "input") if isinstance(item.get(name), str)]


def image_size(url: str) -> tuple[int, int] | None:
    """(width, height) from the header of a base64 data URL's PNG, GIF, WebP or JPEG; None if it does not say."""
    comma = url.find(",", 0, 256) if url.startswith("data:") else -1
    if comma < 0 or not url[:comma].endswith(";base64"):
        return None
    chunk = url[comma + 1 : comma + 1 + IMAGE_HEADER_CHARS]
    try:
        data = base64.b64decode(chunk[: len(chunk) // 4 * 4])
    except (binascii.Error, ValueError):
        return None
    size = _header_size(data)
    return size if size is not None and min(size) > 0 else None


def _header_size(data: bytes) -> tuple[int, int] | None:
    def number(start: int, length: int, order: Literal["little", "big"] = "little") -> int:
        return int.from_bytes(data[start : start + length], order)

    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return number(16, 4, "big"), number(20, 4, "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return number(6, 2), number(8, 2)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8X":
            return 1 + number(24, 3), 1 + number(27, 3)
        if kind == b"VP8L":
            bits = number(21, 4)
            return 1 + (bits & 0x3FFF), 1 + (bits >> 14 & 0x3FFF)
        if kind == b"VP8 ":
            return number(26, 2) & 0x3FFF, number(28, 2) & 0x3FFF
        return None
    at = 2 if data[:2] == b"\xff\xd8" else len(data)  # JPEG: walk its segments to the frame header
    while at + 9 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker in _JPEG_FRAMES:
            return number(at + 7, 2, "big"), number(at + 5, 2, "big")
        if marker == 0xFF:  # a fill byte before the marker
            at += 1
        elif 0xD0 <= marker <= 0xD8 or marker == 0x01:  # a marker without a length
            at += 2
        else:
            at += 2 + number(at + 2, 2, "big")
    return None


def image_tiles(width: int, height: int) -> int:
    """512-px tiles of an image once scaled to fit 2048×2048 and its short side to 768 px (never scaled up)."""
    w, h = Fraction(width), Fraction(height)
    for side, limit in ((max, IMAGE_FIT_PX), (min, IMAGE_SHORT_SIDE_PX)):
        scale = Fraction(limit) / side(w, h)
        if scale < 1:
            w, h = w * scale, h * scale
    return math.ceil(w / IMAGE_TILE_PX) * math.ceil(h / IMAGE_TILE_PX)


def image_tokens(part: dict[str, Any], model: str) -> int:
    """What OpenAI bills for one image part: its tiles, or the most tiles when its size cannot be told."""
    prefix = max((p for p in IMAGE_TOKENS if model.startswith(p)), key=len, default=None)
    base, tile = IMAGE_TOKENS[prefix] if prefix is not None else DEFAULT_IMAGE_TOKENS
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if isinstance(image, dict) and image.get("detail") == "low":
        return base
    size = image_size(url) if isinstance(url, str) else None
    return base + tile * (image_tiles(*size) if size else IMAGE_MAX_TILES)


def prompt_tokens(body: dict[str, Any], model: str) -> int:
    """Prompt tokens of a chat request (messages), a Responses request (instructions, input) or a native
    completions request (prompt)."""
    if "messages" not in body and "input" in body:
        items = body["input"]
        items = [{"role": "user", "content": items}] if isinstance(items, str) else items
        if isinstance(body.get("instructions"), str):
            items = [{"role": "system", "content": body["instructions"]}, *items]
        messages = [
            {"role": i.get("role", ""), "content": "".join(_item_texts(i))} for i in items if isinstance(i, dict)
        ]
        images = sum(image_tokens(part, model) for part in image_parts(body))
        return images + prompt_tokens({"messages": messages, "tools": body.get("tools")}, model)
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
        total += sum(count(text, model) for text in tool_call_texts(message))
        if isinstance(message.get("name"), str):
            total += TOKENS_PER_NAME + count(message["name"], model)
    total += sum(image_tokens(part, model) for part in image_parts(body))
    total += sum(image_tokens(_as_image_part(block), model) for block in anthropic_images(body))
    total += count(_text(body.get("system")), model)  # Anthropic's system prompt, a string or text blocks
    for name in ("tools", "functions"):
        tools = body.get(name)
        for tool in tools if isinstance(tools, list) else ():
            definition = tool.get("function", tool) if isinstance(tool, dict) else tool
            total += count(orjson.dumps(definition).decode(), model)
    return total


def input_tokens(body: dict[str, Any], model: str) -> int:
    """Tokens of an embeddings request's input: each string counted, each array of token ids as long as it is."""
    return sum(len(item) if isinstance(item, list) else count(item, model) for item in inputs(body.get("input")))


def _as_image_part(block: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic image block as the chat part image_tokens reads (only the data's head: enough for its size)."""
    source = block["source"]
    data = anthropic_image_source(block)
    if source.get("type") == "base64":
        data = f"data:{source.get('media_type', '')};base64,{data[:IMAGE_HEADER_CHARS]}"
    return {"type": "image_url", "image_url": {"url": data}}


def completion_tokens(texts: Iterable[str], model: str) -> int:
    return count("".join(texts), model)


async def estimate(body: dict[str, Any], delivered: list[str], model: str, *, route: str = "chat") -> tuple[int, int]:
    """(prompt, completion) tokens, counted in a worker thread: loading and encoding are CPU work."""
    prompt = input_tokens if route == "embeddings" else prompt_tokens
    return await asyncio.to_thread(lambda: (prompt(body, model), completion_tokens(delivered, model)))
