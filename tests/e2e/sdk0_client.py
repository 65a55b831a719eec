"""Run by an older `anthropic` SDK (0.x) in a venv of its own (tests/e2e/test_messages_sdk0.py): the calls
of acceptance line 1 against the gateway, their results printed as one JSON object. Imports nothing of ours.

    python sdk0_client.py BASE_URL KEY TEXT_MODEL TOOL_MODEL
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anthropic

HELLO = [{"role": "user", "content": "Say hello"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def usage(message: Any) -> dict[str, Any]:
    return {k: getattr(message.usage, k, None) for k in ("input_tokens", "output_tokens", "cache_read_input_tokens")}


def main(base_url: str, key: str, text_model: str, tool_model: str) -> dict[str, Any]:
    client = anthropic.Anthropic(api_key=key, base_url=base_url, max_retries=0, timeout=20)
    created = client.messages.create(model=text_model, max_tokens=50, messages=HELLO, temperature=0.2)
    with client.messages.stream(model=text_model, max_tokens=50, messages=HELLO) as stream:
        streamed = stream.get_final_message()
    with client.messages.stream(model=tool_model, max_tokens=200, messages=HELLO, tools=[WEATHER]) as stream:
        asked = stream.get_final_message()
    call = next(block for block in asked.content if block.type == "tool_use")
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}
    turns = [*HELLO, {"role": "assistant", "content": asked.content}, {"role": "user", "content": [result]}]
    answered = client.messages.create(model=tool_model, max_tokens=200, messages=turns, tools=[WEATHER])
    counted = client.messages.count_tokens(model=text_model, messages=HELLO)
    client.close()
    return {
        "version": anthropic.__version__,
        "created": {"text": created.content[0].text, "usage": usage(created)},
        "streamed": {"text": streamed.content[0].text, "usage": usage(streamed)},
        "tool": {"name": call.name, "input": call.input, "stop_reason": asked.stop_reason},
        "answered": answered.content[0].text,
        "count": counted.input_tokens,
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])))
