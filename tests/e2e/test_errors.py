"""SPEC §5's error table: each case OpenAI-shaped (validated against OpenAI's Error schema), nothing lost."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.conftest import Gateway
from tests.fakes.upstream import ERROR_400
from tests.schemas import validate

MESSAGES = [{"role": "user", "content": "hi"}]


def post(gateway: Gateway, key: str | None, body: Any, *, raw: bytes | None = None, **headers: str) -> httpx.Response:
    if key:
        headers["Authorization"] = f"Bearer {key}"
    content = raw if raw is not None else orjson.dumps(body)
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        content=content,
        headers={"Content-Type": "application/json", **headers},
        timeout=20,
    )


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = validate("ErrorResponse", response.json())
    assert body["error"]["code"] == code
    assert response.headers["x-request-id"]
    return dict(body["error"])


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    return gateway.create_key("errors", credit_usd="1")


def test_auth_refuses_missing_key_with_401(gateway: Gateway) -> None:
    error = error_of(post(gateway, None, {"model": "fake-ok", "messages": MESSAGES}), 401, "invalid_api_key")
    assert "Authorization: Bearer" in error["message"]


def test_auth_refuses_unknown_key_with_401_without_echoing_it(gateway: Gateway) -> None:
    wrong = "sk-tb-" + "x" * 40
    response = post(gateway, wrong, {"model": "fake-ok", "messages": MESSAGES})
    error_of(response, 401, "invalid_api_key")
    assert wrong not in response.text


def test_auth_refuses_revoked_key_with_401_through_the_sdk(gateway: Gateway) -> None:
    secret = gateway.create_key("errors-revoked")
    client = gateway.client(secret)
    client.chat.completions.create(model="fake-ok", messages=MESSAGES)
    assert gateway.cli("keys", "revoke", "errors-revoked").returncode == 0
    refused = revoked_within(client, seconds=5)  # the gateway looks for key changes every 0.25 s
    assert refused.code == "invalid_api_key" and "revoked" in refused.message
    validate("ErrorResponse", refused.response.json())


def revoked_within(client: openai.OpenAI, *, seconds: float) -> openai.AuthenticationError:
    """Ask until the key is refused (a revoke reaches a running gateway's key cache within a poll)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            client.chat.completions.create(model="fake-ok", messages=MESSAGES)
        except openai.AuthenticationError as exc:
            return exc
        time.sleep(0.05)
    raise AssertionError(f"a revoked key still worked after {seconds}s")


def test_auth_refuses_expired_key_with_401(gateway: Gateway) -> None:
    secret = gateway.create_key("errors-expired", expires_at=time.time() - 1)
    error = error_of(post(gateway, secret, {"model": "fake-ok", "messages": MESSAGES}), 401, "invalid_api_key")
    assert "expired" in error["message"]


def test_mapping_refuses_unknown_model_with_404(gateway: Gateway, key: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        gateway.client(key).chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert info.value.code == "model_not_found"
    validate("ErrorResponse", info.value.response.json())


def test_mapping_refuses_model_outside_allowlist_with_404(gateway: Gateway) -> None:
    secret = gateway.create_key("errors-allowlist", models=("echo-1",))
    error = error_of(post(gateway, secret, {"model": "fake-ok", "messages": MESSAGES}), 404, "model_not_found")
    assert error["param"] == "model"


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'"a string"', None),
        (orjson.dumps({"messages": MESSAGES}), "model"),
        (orjson.dumps({"model": 7, "messages": MESSAGES}), "model"),
        (orjson.dumps({"model": "fake-ok"}), "messages"),
        (orjson.dumps({"model": "fake-ok", "messages": "hi"}), "messages"),
        (orjson.dumps({"model": "fake-ok", "messages": []}), "messages"),
        (orjson.dumps({"model": "fake-ok", "messages": ["hi"]}), "messages[0]"),
        (orjson.dumps({"model": "fake-ok", "messages": MESSAGES, "stream": "yes"}), "stream"),
        (orjson.dumps({"model": "fake-ok", "messages": MESSAGES, "max_tokens": -5}), "max_tokens"),
        (orjson.dumps({"model": "fake-ok", "messages": MESSAGES, "n": "4"}), "n"),
        (orjson.dumps({"model": "fake-ok", "messages": MESSAGES, "stream_options": 1}), "stream_options"),
    ],
)
def test_body_refuses_malformed_request_with_400(gateway: Gateway, key: str, raw: bytes, param: str | None) -> None:
    error = error_of(post(gateway, key, None, raw=raw), 400, "invalid_request_error")
    assert error["param"] == param


def test_body_refuses_oversized_body_with_413(gateway: Gateway, key: str) -> None:
    huge = {"model": "fake-ok", "messages": [{"role": "user", "content": "x" * 70_000}]}
    error_of(post(gateway, key, huge), 413, "request_too_large")


def test_body_refuses_oversized_chunked_body_with_413(gateway: Gateway, key: str) -> None:
    def chunks() -> Any:
        yield b'{"model": "fake-ok", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"y" * 5000
        yield b'"}]}'

    response = httpx.post(
        gateway.url + "/v1/chat/completions", content=chunks(), headers={"Authorization": f"Bearer {key}"}, timeout=20
    )
    error_of(response, 413, "request_too_large")


def test_upstream_4xx_passes_through_unchanged_and_costs_nothing(gateway: Gateway) -> None:
    secret = gateway.create_key("errors-4xx")
    before = gateway.balance("errors-4xx")
    response = post(gateway, secret, {"model": "fake-400", "messages": MESSAGES})
    assert response.status_code == 400
    assert response.json() == ERROR_400
    validate("ErrorResponse", response.json())
    assert gateway.balance("errors-4xx") == before
    [row] = gateway.usage("errors-4xx")
    assert (row["status"], row["cost"]) == (400, 0)


def test_upstream_5xx_becomes_502_upstream_error_naming_the_channel_to_the_admin_only(gateway: Gateway) -> None:
    secret = gateway.create_key("errors-5xx")
    before = gateway.balance("errors-5xx")
    error = error_of(post(gateway, secret, {"model": "fake-500", "messages": MESSAGES}), 502, "upstream_error")
    assert "'fake'" not in error["message"] and "the provider answered HTTP 500" in error["message"]
    assert gateway.balance("errors-5xx") == before == gateway.ledger_sum("errors-5xx")
    [row] = gateway.usage("errors-5xx")
    assert "channel 'fake' answered HTTP 500" in row["error"]
    assert (row["status"], row["cost"], row["end_reason"]) == (502, 0, "upstream_error")


def test_quota_refuses_empty_balance_with_429_and_no_retry(gateway: Gateway) -> None:
    secret = gateway.create_key("errors-broke", credit_usd="0")
    response = post(gateway, secret, {"model": "fake-ok", "messages": MESSAGES})
    error_of(response, 429, "insufficient_quota")
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/nope", 404, "not_found"),
        ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
    ],
)
def test_router_unknown_route_is_openai_shaped(
    gateway: Gateway, method: str, path: str, status: int, code: str
) -> None:
    error_of(httpx.request(method, gateway.url + path), status, code)


def test_server_keeps_serving_after_bad_input(gateway: Gateway, key: str) -> None:
    for raw in (b"\xff\xfe", b"{", b"null"):
        assert post(gateway, key, None, raw=raw).status_code == 400
    assert gateway.client(key).chat.completions.create(model="fake-ok", messages=MESSAGES).choices
