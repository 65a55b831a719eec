"""Estimates and holds for what is not plain text: tool calls, tool definitions, images."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Gateway
from tests.e2e.test_chat import expected_cost
from tests.fakes.upstream import TOOL_ARGUMENT_PIECES, TOOL_NAME
from tokenbridge.tokens import encoding, prompt_tokens

O200K = encoding("o200k_base")
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_answer_without_usage_is_estimated_with_its_completion_tokens(gateway: Gateway, stream: bool) -> None:
    name = f"estimated-tool-{stream}"
    client = gateway.client(gateway.create_key(name))
    answer = client.chat.completions.create(model="fake-toolcall", messages=ASK, tools=TOOLS, stream=stream)
    if stream:
        pieces = [c.choices[0].delta.tool_calls for c in answer if c.choices and c.choices[0].delta.tool_calls]
        assert "".join(p[0].function.arguments or "" for p in pieces if p[0].function) == "".join(TOOL_ARGUMENT_PIECES)
    else:
        assert answer.choices[0].message.tool_calls[0].function.name == TOOL_NAME
    [row] = gateway.usage(name)
    completion = len(O200K.encode(TOOL_NAME + "".join(TOOL_ARGUMENT_PIECES)))
    prompt = prompt_tokens({"messages": ASK, "tools": TOOLS}, "fake-toolcall")
    assert prompt > prompt_tokens({"messages": ASK}, "fake-toolcall")  # the tool definition counts
    assert (row["usage_source"], row["prompt_tokens"], row["completion_tokens"]) == ("estimated", prompt, completion)
    assert completion > 0 and row["cost"] == expected_cost(prompt, completion)
