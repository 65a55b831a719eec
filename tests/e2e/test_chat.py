"""Chat through the whole chain: the official openai SDK -> real gateway -> fake upstream (real sockets)."""

from __future__ import annotations

from fractions import Fraction

import httpx
import pytest

from tests.conftest import PRICE, UPSTREAM_SECRET, Gateway
from tests.fakes.upstream import PIECES, TEXT, USAGE
from tests.schemas import validate

MESSAGES = [{"role": "user", "content": "Say hello"}]


def expected_cost(prompt: int, completion: int, cached: int = 0, multiplier: Fraction = Fraction(1)) -> int:
    """SPEC §6 written out independently of tokenbridge.money, in nano-USD, rounded up."""
    usd_per_million = (
        Fraction(prompt - cached) * Fraction(PRICE["input"])
        + Fraction(cached) * Fraction(PRICE["cached_input"])
        + Fraction(completion) * Fraction(PRICE["output"])
    )
    nano = usd_per_million / 10**6 * 10**9 * multiplier
    return -((-nano.numerator) // nano.denominator)


def test_chat_json_answer_matches_upstream_and_schema(gateway: Gateway) -> None:
    key = gateway.create_key("chat-json")
    raw = gateway.client(key).chat.completions.with_raw_response.create(model="fake-ok", messages=MESSAGES)
    completion = raw.parse()
    assert completion.choices[0].message.content == TEXT
    assert completion.usage is not None and completion.usage.prompt_tokens == USAGE["prompt_tokens"]
    validate("CreateChatCompletionResponse", raw.http_response.json())
    assert raw.headers["x-request-id"]


def test_chat_stream_pieces_join_to_the_json_text(gateway: Gateway) -> None:
    key = gateway.create_key("chat-stream")
    stream = gateway.client(key).chat.completions.create(model="fake-ok", messages=MESSAGES, stream=True)
    chunks = list(stream)
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert all(c.choices for c in chunks), "the caller did not ask for usage, so no usage-only chunk"


def test_chat_stream_reaches_caller_chunk_by_chunk_while_upstream_holds(gateway: Gateway) -> None:
    key = gateway.create_key("chat-held")
    gateway.fake.arm()
    stream = gateway.client(key).chat.completions.create(model="fake-hold", messages=MESSAGES, stream=True)
    try:
        first = next(stream)  # role chunk
        assert first.choices[0].delta.role == "assistant"
        second = next(stream)  # arrives while the upstream is still holding the rest back
        assert second.choices[0].delta.content == PIECES[0]
    finally:
        gateway.fake.release()
    rest = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert PIECES[0] + rest == TEXT


def test_chat_stream_usage_chunk_arrives_when_caller_asks(gateway: Gateway) -> None:
    key = gateway.create_key("chat-stream-usage")
    stream = gateway.client(key).chat.completions.create(
        model="fake-ok", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == USAGE["completion_tokens"]


def test_upstream_sees_channel_secret_and_mapped_model_never_caller_key(gateway: Gateway) -> None:
    key = gateway.create_key("chat-secret")
    gateway.client(key).chat.completions.create(
        model="public-mapped", messages=MESSAGES, extra_headers={"X-Caller-Private": "keep-me-home"}
    )
    seen = gateway.fake.seen[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert seen.body["model"] == "fake-ok"
    assert key not in str(seen.headers) and key not in str(seen.body)
    assert "x-caller-private" not in seen.headers


def test_balance_equals_credit_minus_costs_after_requests(gateway: Gateway) -> None:
    key = gateway.create_key("chat-bill", credit_usd="0.5")
    client = gateway.client(key)
    ids = []
    for model in ("fake-ok", "fake-cached", "fake-ok"):
        raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
        ids.append(raw.headers["x-request-id"])
    for chunk in client.chat.completions.create(model="fake-ok", messages=MESSAGES, stream=True):
        pass
    one = expected_cost(12, 3)
    cached = expected_cost(12, 3, cached=8)
    total = 3 * one + cached
    assert gateway.balance("chat-bill") == 500_000_000 - total
    assert gateway.ledger_sum("chat-bill") == gateway.balance("chat-bill")
    rows = gateway.usage("chat-bill")
    assert [r["request_id"] for r in rows[:3]] == ids
    assert [r["cost"] for r in rows] == [one, cached, one, one]
    assert all(r["usage_source"] == "upstream" and r["channel"] == "fake" for r in rows)


def test_models_lists_what_the_key_may_use(gateway: Gateway) -> None:
    key = gateway.create_key("models-all")
    limited = gateway.create_key("models-limited", models=("echo-1",))
    everything = httpx.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).json()
    validate("ListModelsResponse", everything)
    assert {m["id"] for m in everything["data"]} >= {"fake-ok", "echo-1"}
    assert [m.id for m in gateway.client(limited).models.list()] == ["echo-1"]


def test_echo_channel_streams_and_bills_offline(gateway: Gateway) -> None:
    key = gateway.create_key("echo")
    client = gateway.client(key)
    said = "the quick brown fox"
    answer = client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": said}])
    assert answer.choices[0].message.content == said
    assert answer.usage is not None and answer.usage.completion_tokens == 4
    pieces = [
        c.choices[0].delta.content
        for c in client.chat.completions.create(
            model="echo-1", messages=[{"role": "user", "content": said}], stream=True
        )
        if c.choices
    ]
    assert "".join(p or "" for p in pieces) == said and len([p for p in pieces if p]) == 4
    rows = gateway.usage("echo")
    assert len(rows) == 2 and all(r["cost"] > 0 and r["channel"] == "demo" for r in rows)


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_routes_answer_ok_with_request_id(gateway: Gateway, path: str) -> None:
    response = httpx.get(gateway.url + path, headers={"X-Request-ID": "probe-1"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "probe-1"
