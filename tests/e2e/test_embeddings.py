"""POST /v1/embeddings (SPEC §11) and which routes a model serves (SPEC §10), against the real gateway:
the official SDK's `embeddings.create` on a fake-upstream channel and on the echo, billing, and refusals."""

from __future__ import annotations

import array
import base64
import zlib
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai import OpenAI
from openai.types import CreateEmbeddingResponse

from tests.conftest import UPSTREAM_SECRET, Gateway, serve_config
from tests.e2e.test_chat import MESSAGES
from tests.e2e.test_streams import hang_up_while_held, settled_row
from tests.fakes.embeddings import DIMENSIONS, embedding_tokens, fake_vector
from tests.fakes.upstream import FakeUpstream
from tests.schemas import validate
from tokenbridge.limits import MAX_JSON_BYTES
from tokenbridge.tokens import encoding

CONFIG = """
[server]
database = "embeddings.db"

[[channels]]
name = "fake"
base_url = "{upstream}/v1"
api_key = "{secret}"
models = ["text-embedding-3-small", "emb-nousage", "emb-hold", "emb-down", "chat-only", "fake-ok"]
model_map = {{ "emb-nousage" = "fake-nousage", "emb-hold" = "fake-hold", "emb-down" = "fake-500" }}

[[channels]]
name = "demo"
kind = "echo"
models = ["echo-embed", "echo-1"]

[models."text-embedding-3-small"]
input = 0.02
routes = ["embeddings"]

[models."emb-nousage"]
input = 0.02
routes = ["embeddings"]

[models."emb-hold"]
input = 0.02
routes = ["embeddings"]

[models."emb-down"]
input = 0.02
routes = ["embeddings"]

[models."chat-only"]
input = 1.5
output = 4.0
routes = ["chat"]

[models."fake-ok"]
input = 1.5
output = 4.0

[models."echo-embed"]
input = 0.13
routes = ["embeddings"]

[models."echo-1"]
input = 1.0
output = 2.0
"""
PRICE = {
    "text-embedding-3-small": "0.02",
    "emb-nousage": "0.02",
    "emb-hold": "0.02",
    "echo-embed": "0.13",
    "fake-ok": "1.5",
}
ALL_ROUTES = ["chat", "completions", "responses", "embeddings", "messages"]
ONE = "The quick brown fox jumps over the lazy dog"
SEVERAL = ["first text", "a second, longer text to embed", "third"]
CREDIT = 10**9  # nano-USD: create_key's default of $1


def each_input_and_format(test: Any) -> Any:
    """One string and a list; `float` asked for, and the SDK's default (base64 on the wire, decoded by the SDK)."""
    by_input = pytest.mark.parametrize("value", [ONE, SEVERAL], ids=["one-string", "a-list"])
    return by_input(pytest.mark.parametrize("encoding_format", ["float", None], ids=["float", "sdk-default"])(test))


@pytest.fixture(scope="module")
def gateway(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    fake, url = upstream
    yield from serve_config(CONFIG.format(upstream=url, secret=UPSTREAM_SECRET), tmp_path_factory, fake)


def input_cost(model: str, tokens: int) -> int:
    """SPEC §6 for an answer without output, written out apart from tokenbridge.money: nano-USD, rounded up."""
    nano = Fraction(tokens) * Fraction(PRICE[model]) / 10**6 * 10**9
    return -((-nano.numerator) // nano.denominator)


def echo_tokens(value: Any) -> int:
    """What the echo counts: a token per word (with the spaces after it) of each string."""
    items = [value] if isinstance(value, str) else value
    return sum(len(item.split()) for item in items)


def decoded(answer: dict[str, Any]) -> dict[str, Any]:
    """A base64 answer with its vectors decoded (little-endian float32, as OpenAI sends them), for the schema."""
    data = [{**e, "embedding": array.array("f", base64.b64decode(e["embedding"])).tolist()} for e in answer["data"]]
    return {**answer, "data": data}


def create_checked(
    gateway: Gateway, name: str, model: str, value: Any, encoding_format: str | None
) -> tuple[OpenAI, CreateEmbeddingResponse]:
    """`embeddings.create` through the SDK with a new key `name`; the answer as sent and as the SDK parsed
    it each validated against OpenAI's CreateEmbeddingResponse. None: the SDK's default (base64, decoded)."""
    client = gateway.client(gateway.create_key(name))
    options: dict[str, Any] = {"encoding_format": encoding_format} if encoding_format else {}
    raw = client.embeddings.with_raw_response.create(model=model, input=value, **options)
    answer, wire = raw.parse(), raw.http_response.json()
    if encoding_format is None:
        assert all(isinstance(e["embedding"], str) for e in wire["data"])  # base64 on the wire, passed through
        wire = decoded(wire)
    validate("CreateEmbeddingResponse", wire)
    validate("CreateEmbeddingResponse", answer.model_dump())
    return client, answer


def post(gateway: Gateway, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/embeddings", json=body, headers={"Authorization": f"Bearer {key}"})


@each_input_and_format
def test_embeddings_sdk_on_a_fake_channel_validates_and_bills_exactly(
    gateway: Gateway, value: Any, encoding_format: str | None
) -> None:
    name = f"emb-fake-{len(value)}-{encoding_format}"
    _, answer = create_checked(gateway, name, "text-embedding-3-small", value, encoding_format)
    seen = gateway.fake.requests_for("text-embedding-3-small")[-1]
    assert seen.path == "/v1/embeddings" and seen.body["input"] == value
    assert seen.body["encoding_format"] == (encoding_format or "base64")  # what the SDK asks for by default
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"  # the channel's key, never the caller's
    count = 1 if isinstance(value, str) else len(value)
    assert [e.embedding for e in answer.data] == [fake_vector(i, DIMENSIONS) for i in range(count)]
    tokens = embedding_tokens(value)
    assert (answer.usage.prompt_tokens, answer.usage.total_tokens) == (tokens, tokens)
    [row] = gateway.usage(name)
    assert (row["route"], row["stream"], row["status"], row["end_reason"]) == ("embeddings", 0, 200, "done")
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (tokens, 0, "upstream")
    assert row["cost"] == input_cost("text-embedding-3-small", tokens)
    assert gateway.balance(name) == gateway.ledger_sum(name) == CREDIT - row["cost"]


def test_embeddings_bytes_pass_through_as_the_upstream_sent_them(gateway: Gateway) -> None:
    key = gateway.create_key("emb-bytes")
    body = {"model": "text-embedding-3-small", "input": [[1, 2, 3], [4, 5]], "dimensions": 3}
    response = post(gateway, key, body)
    seen = gateway.fake.requests_for("text-embedding-3-small")[-1]
    assert orjson.loads(seen.raw) == body  # forwarded as checked
    expected = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": fake_vector(i, 3)} for i in range(2)],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 5, "total_tokens": 5},
    }
    assert response.content == orjson.dumps(expected)  # the fake's bytes, unchanged
    [row] = gateway.usage("emb-bytes")
    assert (row["prompt_tokens"], row["cost"]) == (5, input_cost("text-embedding-3-small", 5))


@each_input_and_format
def test_embeddings_sdk_on_the_echo_gets_deterministic_vectors_and_real_usage(
    gateway: Gateway, value: Any, encoding_format: str | None
) -> None:
    name = f"emb-echo-{len(value)}-{encoding_format}"
    client, answer = create_checked(gateway, name, "echo-embed", value, encoding_format)
    count = 1 if isinstance(value, str) else len(value)
    assert [e.index for e in answer.data] == list(range(count))
    vectors = [e.embedding for e in answer.data]
    assert all(len(v) == 8 and abs(sum(x * x for x in v) - 1) < 1e-5 for v in vectors)  # the default size, unit length
    again = client.embeddings.create(model="echo-embed", input=value, encoding_format="float")
    assert [e.embedding for e in again.data] == vectors  # the same text, the same vector, whichever encoding
    assert len({tuple(v) for v in vectors}) == count  # another text, another vector
    tokens = echo_tokens(value)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == tokens
    rows = gateway.usage(name)
    assert [(r["prompt_tokens"], r["completion_tokens"], r["usage_source"]) for r in rows] == [
        (tokens, 0, "upstream")
    ] * 2
    assert [r["cost"] for r in rows] == [input_cost("echo-embed", tokens)] * 2
    assert gateway.balance(name) == gateway.ledger_sum(name) == CREDIT - 2 * input_cost("echo-embed", tokens)


def test_embeddings_echo_honours_dimensions_and_explicit_base64(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key("emb-echo-dims"))
    floats = client.embeddings.create(model="echo-embed", input=ONE, dimensions=3, encoding_format="float")
    encoded = client.embeddings.create(model="echo-embed", input=ONE, dimensions=3, encoding_format="base64")
    text = encoded.data[0].embedding
    assert isinstance(text, str)  # asked for explicitly: the SDK leaves it as sent
    assert array.array("f", base64.b64decode(text)).tolist() == floats.data[0].embedding
    assert len(floats.data[0].embedding) == 3
    tokens = client.embeddings.create(model="echo-embed", input=[[10, 20, 30], [40]], encoding_format="float")
    assert tokens.usage.prompt_tokens == 4 and len(tokens.data) == 2  # token ids count as they are


def test_embeddings_without_usage_are_estimated_offline(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key("emb-estimated"))
    answer = client.embeddings.create(model="emb-nousage", input=SEVERAL, encoding_format="float")
    assert answer.usage is None or answer.usage.prompt_tokens is None  # the upstream sent none
    o200k = encoding("o200k_base")  # the upstream model "fake-nousage" is unknown to tiktoken: o200k_base
    tokens = sum(len(o200k.encode(text)) for text in SEVERAL)
    [row] = gateway.usage("emb-estimated")
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (tokens, 0, "estimated")
    assert row["cost"] == input_cost("emb-nousage", tokens)
    assert gateway.balance("emb-estimated") == gateway.ledger_sum("emb-estimated") == CREDIT - row["cost"]


def test_embeddings_upstream_failure_costs_nothing(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key("emb-down"))
    with pytest.raises(openai.APIStatusError) as caught:
        client.embeddings.create(model="emb-down", input=ONE)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_error"
    assert {s.path for s in gateway.fake.requests_for("fake-500")} >= {"/v1/embeddings"}
    [row] = gateway.usage("emb-down")
    assert (row["status"], row["cost"], row["end_reason"]) == (502, 0, "upstream_error")
    assert gateway.balance("emb-down") == gateway.ledger_sum("emb-down") == CREDIT


def test_embeddings_caller_gone_before_the_answer_pays_only_its_input(gateway: Gateway) -> None:
    hang_up_while_held(gateway, "/v1/embeddings", gateway.create_key("emb-gone"), {"model": "emb-hold", "input": ONE})
    row = settled_row(gateway, "emb-gone", lambda r: r["end_reason"] == "client_gone")
    # As on every route (SPEC §6): the upstream had the input, so it is billed, counted offline; no output.
    tokens = len(encoding("o200k_base").encode(ONE))
    assert (row["status"], row["usage_source"], row["prompt_tokens"], row["completion_tokens"]) == (
        499, "estimated", tokens, 0,
    )  # fmt: skip
    assert row["cost"] == input_cost("emb-hold", tokens)
    assert gateway.balance("emb-gone") == gateway.ledger_sum("emb-gone") == CREDIT - row["cost"]


def test_embeddings_hold_is_the_input_alone(gateway: Gateway) -> None:
    # Credit for the body's bytes at the input price, and not one nano-USD more: no output is held, even
    # for a model that has an output price (fake-ok serves chat too).
    body = orjson.dumps({"model": "fake-ok", "input": ONE})
    hold = input_cost("fake-ok", len(body))
    enough = gateway.create_key("emb-hold-ok", str(Decimal(hold) / 10**9))
    response = httpx.post(gateway.url + "/v1/embeddings", content=body, headers={"Authorization": f"Bearer {enough}"})
    assert response.status_code == 200, response.text
    short = gateway.create_key("emb-hold-short", str(Decimal(hold - 1) / 10**9))
    refused = httpx.post(gateway.url + "/v1/embeddings", content=body, headers={"Authorization": f"Bearer {short}"})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
    assert "0 completion tokens" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("input", ""), ("input", []), ("input", [""]), ("input", [[]]), ("input", ["a", 1]), ("input", [1.5]),
        ("input", [True]), ("input", {"text": "x"}), ("input", ["x"] * 2049), ("encoding_format", "int8"),
        ("dimensions", 0), ("dimensions", "8"), ("stream", True),
    ],
)  # fmt: skip
def test_embeddings_bad_request_is_a_400_naming_the_field(gateway: Gateway, field: str, value: Any) -> None:
    key = gateway.create_key(f"emb-bad-{field}-{zlib.crc32(repr(value).encode())}")  # a name the CLI takes
    body = {"model": "text-embedding-3-small", "input": ONE, field: value}
    response = post(gateway, key, body)
    assert response.status_code == 400, response.text
    error = validate("ErrorResponse", response.json())["error"]
    assert (error["code"], error["param"]) == ("invalid_request_error", field) and f"'{field}'" in error["message"]
    assert post(gateway, key, {"model": "text-embedding-3-small", "input": ONE}).status_code == 200  # serving on


def test_embeddings_missing_input_is_a_400(gateway: Gateway) -> None:
    response = post(gateway, gateway.create_key("emb-no-input"), {"model": "text-embedding-3-small"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "input"


def test_model_restricted_by_routes_is_refused_on_the_other_routes(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key("routes-refused"))
    for create in (
        lambda: client.chat.completions.create(model="text-embedding-3-small", messages=MESSAGES),
        lambda: client.completions.create(model="echo-embed", prompt="hi"),
        lambda: client.embeddings.create(model="chat-only", input=ONE),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            create()
        assert caught.value.code == "model_not_found"
    assert "is not served on /v1/embeddings; it is served on /v1/chat/completions" in caught.value.message
    assert not [s for s in gateway.fake.requests_for("chat-only") if s.path == "/v1/embeddings"]  # never sent
    assert {r["cost"] for r in gateway.usage("routes-refused")} == {0}
    # Where they are served, they answer: and an unrestricted model serves every route.
    assert client.chat.completions.create(model="chat-only", messages=MESSAGES).choices[0].message.content
    assert client.embeddings.create(model="fake-ok", input=ONE).data
    assert len(client.embeddings.create(model="echo-1", input=SEVERAL).data) == 3  # the shipped config's model


def test_models_list_says_the_routes_of_each_model(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key("routes-listed"))
    listed = {m.id: m for m in client.models.list()}  # the SDK parses the list with the extra field
    assert listed["text-embedding-3-small"].model_extra == {"routes": ["embeddings"]}
    assert listed["chat-only"].model_extra == {"routes": ["chat"]}
    assert listed["fake-ok"].model_extra == {"routes": ALL_ROUTES}
    assert client.models.retrieve("echo-embed").model_extra == {"routes": ["embeddings"]}
    raw = httpx.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {client.api_key}"}).json()
    validate("ListModelsResponse", raw)
    for entry in raw["data"]:
        validate("Model", entry)


def test_config_check_says_the_routes_of_each_model(gateway: Gateway) -> None:
    checked = gateway.cli("config", "check", "--json")
    assert checked.returncode == 0, checked.stderr
    routes = orjson.loads(checked.stdout)["routes"]
    assert routes["text-embedding-3-small"] == ["embeddings"] and routes["fake-ok"] == ALL_ROUTES
    text = gateway.cli("config", "check").stdout
    assert "chat-only (chat)" in text and "echo-embed (embeddings)" in text


def test_embeddings_answer_too_large_to_read_whole_is_billed_by_the_usage_it_ends_with(gateway: Gateway) -> None:
    key = gateway.create_key("emb-large")
    body = {"model": "text-embedding-3-small", "input": ["one", "two words"], "dimensions": 600_000}
    response = post(gateway, key, body)
    assert response.status_code == 200 and len(response.content) > MAX_JSON_BYTES  # past what the meter reads whole
    assert response.json()["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    [row] = gateway.usage("emb-large")
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (3, 0, "upstream")
    assert row["cost"] == input_cost("text-embedding-3-small", 3)
