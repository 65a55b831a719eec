"""/v1/completions through the shim on chat-only upstreams, streaming included, and natively."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Gateway
from tests.e2e.test_chat import expected_cost
from tests.fakes.upstream import PIECES, TEXT, native_json, native_sse
from tests.schemas import completion_chunk_validator, validate

PROMPT = "the quick brown fox jumps"


def post(gateway: Gateway, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/completions", json=body, headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize("model", ["echo-1", "fake-ok"])
def test_completions_text_equals_chat_text_streaming_and_not(gateway: Gateway, model: str) -> None:
    client = gateway.client(gateway.create_key(f"cmpl-same-{model}"))
    chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}])
    raw = client.completions.with_raw_response.create(model=model, prompt=PROMPT)
    completion = raw.parse()
    validate("CreateCompletionResponse", raw.http_response.json())
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert completion.choices[0].text == chat.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage == chat.usage
    chunks = list(client.completions.create(model=model, prompt=PROMPT, stream=True))
    for chunk in chunks:
        completion_chunk_validator().validate(chunk.model_dump(exclude_unset=True))
    assert "".join(c.choices[0].text for c in chunks) == completion.choices[0].text
    assert all(c.choices for c in chunks), "no role-only, empty or unrequested usage chunks"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_completions_prompt_as_list_of_one_and_usage_chunk_when_asked(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key("cmpl-usage"))
    chunks = list(
        client.completions.create(model="fake-ok", prompt=[PROMPT], stream=True, stream_options={"include_usage": True})
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    completion_chunk_validator().validate(chunks[-1].model_dump(exclude_unset=True))


def test_completions_stream_reaches_caller_chunk_by_chunk(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key("cmpl-held"))
    gateway.fake.arm()
    stream = client.completions.create(model="fake-hold", prompt=PROMPT, stream=True)
    try:
        assert next(stream).choices[0].text == PIECES[0]  # while the upstream still holds the rest
    finally:
        gateway.fake.release()
    assert PIECES[0] + "".join(c.choices[0].text for c in stream) == TEXT


@pytest.mark.parametrize(("field", "value"), [("echo", True), ("suffix", "!"), ("best_of", 3), ("logprobs", 2)])
def test_completions_field_chat_cannot_honour_is_refused_by_name(gateway: Gateway, field: str, value: Any) -> None:
    key = gateway.create_key(f"cmpl-refuse-{field}")
    response = post(gateway, key, {"model": "fake-ok", "prompt": PROMPT, field: value})
    assert response.status_code == 400
    error = validate("ErrorResponse", response.json())["error"]
    assert error["code"] == "invalid_request_error" and error["param"] == field and f"'{field}'" in error["message"]
    assert gateway.usage(f"cmpl-refuse-{field}")[0]["cost"] == 0


@pytest.mark.parametrize("prompt", [["one", "two"], [1, 2, 3], 7, []])
def test_completions_prompt_the_shim_cannot_take_is_refused(gateway: Gateway, prompt: Any) -> None:
    name = "cmpl-prompt-" + "".join(c if c.isalnum() else "." for c in str(prompt))  # an account name
    response = post(gateway, gateway.create_key(name), {"model": "fake-ok", "prompt": prompt})
    assert response.status_code == 400
    assert validate("ErrorResponse", response.json())["error"]["param"] == "prompt"


def test_completions_native_channel_passes_bytes_through(gateway: Gateway) -> None:
    key = gateway.create_key("cmpl-native")
    response = post(gateway, key, {"model": "fake-native", "prompt": PROMPT, "echo": True})
    assert gateway.fake.seen[-1].path == "/v1/completions"
    assert gateway.fake.seen[-1].body["prompt"] == PROMPT and gateway.fake.seen[-1].body["echo"] is True
    assert response.content == native_json("fake-native")
    validate("CreateCompletionResponse", response.json())
    body = {"model": "fake-native", "prompt": PROMPT, "stream": True, "stream_options": {"include_usage": True}}
    streamed = post(gateway, key, body)
    assert streamed.content == b"".join(native_sse("fake-native", include_usage=True))


def test_completions_bill_the_same_as_chat_with_route_recorded(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key("cmpl-bill"))
    client.chat.completions.create(model="fake-ok", messages=[{"role": "user", "content": PROMPT}])
    client.completions.create(model="fake-ok", prompt=PROMPT)
    for _ in client.completions.create(model="fake-ok", prompt=PROMPT, stream=True):
        pass
    rows = gateway.usage("cmpl-bill")
    assert [r["route"] for r in rows] == ["chat", "completions", "completions"]
    assert [r["cost"] for r in rows] == [expected_cost(12, 3)] * 3
    assert all(r["usage_source"] == "upstream" and r["end_reason"] == "done" for r in rows)
    assert gateway.balance("cmpl-bill") == gateway.ledger_sum("cmpl-bill") == 10**9 - 3 * expected_cost(12, 3)


def test_completions_hold_and_upstream_see_the_same_completion_limit(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key("cmpl-limit"))
    answer = client.completions.create(model="echo-1", prompt=PROMPT, extra_body={"max_completion_tokens": 1})
    assert answer.choices[0].text == "the " and answer.choices[0].finish_reason == "length"


def test_completions_untranslatable_answer_is_a_502_that_costs_nothing(gateway: Gateway) -> None:
    key = gateway.create_key("cmpl-garbage")
    response = post(gateway, key, {"model": "fake-garbage", "prompt": PROMPT})
    assert (
        response.status_code == 502 and validate("ErrorResponse", response.json())["error"]["code"] == "upstream_error"
    )
    [row] = gateway.usage("cmpl-garbage")
    assert (row["status"], row["cost"]) == (502, 0)
    assert gateway.balance("cmpl-garbage") == gateway.ledger_sum("cmpl-garbage") == 10**9


@pytest.mark.parametrize("route", ["chat", "completions"])
def test_unterminated_done_still_ends_the_stream_properly(gateway: Gateway, route: str) -> None:
    key = gateway.create_key(f"unterminated-{route}")
    if route == "chat":
        body: dict[str, Any] = {"model": "fake-unterminated", "messages": [{"role": "user", "content": "x"}]}
    else:
        body = {"model": "fake-unterminated", "prompt": PROMPT}
    response = httpx.post(gateway.url + f"/v1/{route.replace('chat', 'chat/completions')}",
                          json={**body, "stream": True}, headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert response.content.endswith(b"data: [DONE]\n\n")
    [row] = gateway.usage(f"unterminated-{route}")
    assert row["end_reason"] == "done" and row["cost"] == expected_cost(12, 3)
