"""What OpenAI clients expect besides completions (issue 11, item 19): `models.retrieve`, and CORS for
browser apps (SPEC §3 `cors_origins`), against the real gateway on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import Gateway, config_text
from tests.fakes.server import serve_in_thread
from tests.fakes.upstream import FakeUpstream
from tests.schemas import validate
from tokenbridge.app import create_app
from tokenbridge.settings import load_settings
from tokenbridge.wire import HTTP_PROTOCOL

APP_ORIGIN = "https://app.example"


def test_models_retrieve_returns_the_model_shape_for_a_model_the_key_may_use(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key("retrieve-all"))
    model = client.models.retrieve("fake-ok")
    assert model.id == "fake-ok" and model.object == "model"
    answer = httpx.get(gateway.url + "/v1/models/echo-1", headers={"Authorization": f"Bearer {client.api_key}"})
    assert answer.status_code == 200
    validate("Model", answer.json())
    listed = {m["id"]: m for m in httpx.get(gateway.url + "/v1/models", headers=answer.request.headers).json()["data"]}
    assert answer.json() == listed["echo-1"]  # the same entry as in the list


def test_models_retrieve_is_404_model_not_found_for_a_model_the_key_may_not_use(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key("retrieve-limited", models=("echo-1",)))
    for model in ("fake-ok", "no-such-model"):  # not allowed, and served by nobody: the same answer
        with pytest.raises(openai.NotFoundError) as caught:
            client.models.retrieve(model)
        assert caught.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        gateway.client("sk-tb-wrong").models.retrieve("echo-1")


@pytest.fixture(scope="module")
def cors_gateway(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("cors") / "config.toml"
    text = config_text(upstream[1]).replace("[server]\n", f'[server]\ncors_origins = ["{APP_ORIGIN}"]\n', 1)
    config.write_text(text)
    with serve_in_thread(create_app(load_settings(config)), http=HTTP_PROTOCOL) as url:
        yield url


PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, x-request-id, x-stainless-os",
}


def test_cors_preflight_is_204_with_the_allowed_origin_methods_and_headers(cors_gateway: str) -> None:
    answer = httpx.options(cors_gateway + "/v1/chat/completions", headers={"Origin": APP_ORIGIN, **PREFLIGHT})
    assert answer.status_code == 204 and answer.content == b""
    assert answer.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "access-control-allow-credentials" not in answer.headers  # bearer keys, never cookies
    assert "POST" in answer.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-request-id", "x-stainless-os"} <= allowed


def test_cors_answers_carry_the_origin_header_only_for_configured_origins(cors_gateway: str) -> None:
    answer = httpx.get(cors_gateway + "/v1/models", headers={"Origin": APP_ORIGIN})  # a 401: still readable by the app
    assert answer.status_code == 401
    assert answer.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
    other = "https://evil.example"
    assert "access-control-allow-origin" not in httpx.get(cors_gateway + "/healthz", headers={"Origin": other}).headers
    refused = httpx.options(cors_gateway + "/v1/chat/completions", headers={"Origin": other, **PREFLIGHT})
    assert refused.status_code >= 400 and "access-control-allow-origin" not in refused.headers


def test_cors_is_off_when_no_origin_is_configured(gateway: Gateway) -> None:
    answer = httpx.options(gateway.url + "/v1/chat/completions", headers={"Origin": APP_ORIGIN, **PREFLIGHT})
    assert answer.status_code == 405 and "access-control-allow-origin" not in answer.headers
