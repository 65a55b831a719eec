"""The hold's bound on the prompt (stages/quota.py): bytes for text, a fixed ceiling per image part."""

from __future__ import annotations

from typing import Any

import orjson

from tokenbridge.stages.quota import prompt_bound
from tokenbridge.tokens import IMAGE_PART_MAX_TOKENS, encoding, prompt_tokens

PNG_1MB = "data:image/png;base64," + "iVBORw0K" * (1 << 17)


def chat(*content: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": list(content)}], "max_tokens": 1}


def image(url: str, detail: str = "high") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def bound(body: dict[str, Any]) -> int:
    return prompt_bound(orjson.dumps(body), body)


def test_prompt_bound_of_text_is_the_body_bytes() -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Héllo wörld " * 50}]}
    raw = orjson.dumps(body)
    assert prompt_bound(raw, body) == len(raw) >= prompt_tokens(body, "gpt-4o")


def test_prompt_bound_counts_a_large_image_by_its_ceiling_not_its_bytes() -> None:
    body = chat({"type": "text", "text": "What is in it?"}, image(PNG_1MB))
    raw = orjson.dumps(body)
    assert prompt_bound(raw, body) == len(raw) - len(PNG_1MB) + IMAGE_PART_MAX_TOKENS
    assert prompt_bound(raw, body) < 100_000 < len(raw)


def test_prompt_bound_counts_a_short_image_url_at_its_ceiling_too() -> None:
    body = chat(image("https://example.com/a.png"), image("https://example.com/b.png", "low"))
    raw = orjson.dumps(body)
    assert prompt_bound(raw, body) > 2 * IMAGE_PART_MAX_TOKENS > len(raw)


def test_prompt_bound_is_never_below_the_offline_count_for_any_model() -> None:
    body = chat({"type": "text", "text": "Compare them."}, image("https://x/a.png"), image(PNG_1MB, "low"))
    for model in ("gpt-4o", "gpt-4o-mini", "o1", "llama3.2"):
        assert bound(body) >= prompt_tokens(body, model)


def test_prompt_bound_keeps_counting_audio_and_file_parts_and_look_alikes_by_their_bytes() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "UklGR" * 20_000, "format": "wav"}}
    document = {"type": "file", "file": {"file_data": "data:application/pdf;base64," + "JVBE" * 20_000}}
    not_an_image = {"type": "text", "text": "look", "image_url": {"url": PNG_1MB}}
    body = chat(audio, document, not_an_image)
    assert bound(body) == len(orjson.dumps(body))


def test_prompt_bound_text_bytes_bound_the_tokens_of_a_dense_script() -> None:
    text = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 3000))  # CJK: few bytes per token is the worst case
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}
    assert bound(body) >= len(encoding("o200k_base").encode(text)) + 7
