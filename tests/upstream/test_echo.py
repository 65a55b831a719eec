"""The built-in echo channel (upstream/echo.py): what it answers for the content a caller may send."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tokenbridge.upstream.echo import EchoResponse, prompt_tokens


async def answer_text(body: dict[str, Any]) -> str:
    chunks = [chunk async for chunk in EchoResponse(body).chunks()]
    return str(orjson.loads(b"".join(chunks))["choices"][0]["message"]["content"])


@pytest.mark.parametrize("text", [5, None, ["x"], {"a": 1}, True])
async def test_echo_skips_text_parts_whose_text_is_not_a_string(text: Any) -> None:
    # It raised TypeError (a 500 for the caller); as with an image part, such a part adds no text.
    content = [{"type": "text", "text": "Hello "}, {"type": "text", "text": text}, {"type": "text", "text": "there"}]
    messages = [{"role": "user", "content": content}]
    assert await answer_text({"model": "echo-1", "messages": messages}) == "Hello there"
    assert prompt_tokens(messages) == 3 + 2


async def test_echo_answers_the_text_parts_of_the_last_user_message() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    content = [{"type": "text", "text": "one "}, image, {"type": "text", "text": "two"}]
    messages = [{"role": "user", "content": "earlier"}, {"role": "user", "content": content}]
    assert await answer_text({"model": "echo-1", "messages": messages}) == "one two"
