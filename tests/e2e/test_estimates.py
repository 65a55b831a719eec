"""Estimates and holds for what is not plain text: tool calls, tool definitions, images."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import Gateway, serve_gateway
from tests.e2e.test_chat import expected_cost
from tests.fakes.upstream import TOOL_ARGUMENT_PIECES, TOOL_NAME, USAGE, FakeUpstream
from tokenbridge.tokens import IMAGE_PART_MAX_TOKENS, encoding, prompt_tokens

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


@pytest.fixture(scope="module")
def roomy_gateway(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway taking bodies of up to 4 MB (its default), as a caller sending images needs."""
    yield from serve_gateway(upstream, tmp_path_factory, max_body_bytes=4 << 20)


def test_one_megabyte_image_with_max_tokens_1_on_a_1_dollar_key_is_admitted_and_billed_its_usage(
    roomy_gateway: Gateway,
) -> None:
    gateway = roomy_gateway
    client = gateway.client(gateway.create_key("image-1mb", credit_usd="1"))
    url = "data:image/png;base64," + "iVBORw0K" * (1 << 17)  # 1 MiB of base64: 1.5 USD at one token a byte
    content: list[Any] = [{"type": "text", "text": "What is in it?"}, {"type": "image_url", "image_url": {"url": url}}]
    answer = client.chat.completions.create(
        model="fake-ok", messages=[{"role": "user", "content": content}], max_tokens=1
    )
    assert answer.usage is not None and answer.usage.prompt_tokens == USAGE["prompt_tokens"]
    seen = gateway.fake.requests_for("fake-ok")[-1]
    assert seen.body["messages"][0]["content"][1]["image_url"]["url"] == url
    assert seen.headers["content-length"] == str(len(seen.raw))  # sent whole, not chunked
    [row] = gateway.usage("image-1mb")
    assert (row["usage_source"], row["prompt_tokens"], row["completion_tokens"]) == ("upstream", 12, 3)
    assert row["cost"] == expected_cost(12, 3)
    assert gateway.balance("image-1mb") == 10**9 - expected_cost(12, 3) == gateway.ledger_sum("image-1mb")


def test_image_request_over_the_balance_is_refused_naming_its_prompt_bound(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key("image-poor", credit_usd="0.00001"))
    content: list[Any] = [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="fake-ok", messages=[{"role": "user", "content": content}], max_tokens=1)
    assert info.value.code == "insufficient_quota"
    bound = int(info.value.message.split("(up to ")[1].split(" prompt")[0])
    assert IMAGE_PART_MAX_TOKENS < bound < IMAGE_PART_MAX_TOKENS + 200
    [row] = gateway.usage("image-poor")  # refused before any hold: cost 0 (issue 14)
    assert (row["status"], row["end_reason"], row["cost"]) == (429, "refused", 0)
