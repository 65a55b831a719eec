"""What an upstream answers is judged before the first byte: a non-answer fails over, a refusal is cleaned.

Issue 11, items 7 (a 200 that is not an answer), 11 (4xx bodies that echo the channel's key),
13 (the channel's own 401/403) and 18 (Retry-After on 503 and on upstream 429s).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import FakeUpstream, Gateway, serve_config
from tests.e2e.test_channels import PRICES, HandClock, channel
from tests.e2e.test_chat import MESSAGES, expected_cost
from tests.fakes.upstream import TEXT
from tests.schemas import validate

SECRET = "sk-answers-SECRET-never-to-callers-77"
COOLDOWN_S = 30
MODELS = ("html-json", "html-sse", "garbage-json", "creds-then-ok", "html-only", "leaky", "creds-only", "limited",
          "down")  # fmt: skip

CONFIG = (
    f"""
[server]
database = "answers.db"
breaker_failures = 1
breaker_cooldown = {COOLDOWN_S}
breaker_max_cooldown = 60
"""
    + channel("htmlish", ["html-json", "html-sse"], "fake-html", priority=10)
    + channel("garbled", ["garbage-json"], "fake-garbage", priority=10)
    + channel("badcreds", ["creds-then-ok"], "fake-401", priority=10, api_key=SECRET)
    + channel("backup", ["html-json", "html-sse", "garbage-json", "creds-then-ok"], "fake-ok")
    + channel("htmlonly", ["html-only"], "fake-html")
    + channel("leaky", ["leaky"], "fake-leaky-400", api_key=SECRET)
    + channel("badcreds-only", ["creds-only"], "fake-401", api_key=SECRET)
    + channel("limited-a", ["limited"], "fake-429")
    + channel("limited-b", ["limited"], "fake-429")
    + channel("down", ["down"], "fake-500")
    + "".join(f'[models."{m}"]\n{PRICES}' for m in MODELS)
)


@pytest.fixture(scope="module")
def answers(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    fake, url = upstream
    text = CONFIG.replace("HOST", url.removeprefix("http://"))
    yield from serve_config(text, tmp_path_factory, fake, rng=random.Random(11), clock=HandClock())


def post(gateway: Gateway, key: str, model: str, **extra: object) -> httpx.Response:
    body = {"model": model, "messages": MESSAGES, **extra}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


def ask(gateway: Gateway, key: str, model: str, *, stream: bool) -> str:
    client = gateway.client(key)
    if not stream:
        return client.chat.completions.create(model=model, messages=MESSAGES).choices[0].message.content or ""
    chunks = client.chat.completions.create(model=model, messages=MESSAGES, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize(("model", "upstream_model", "stream"),
                         [("html-json", "fake-html", False), ("html-sse", "fake-html", True),
                          ("garbage-json", "fake-garbage", False)])  # fmt: skip
def test_proxy_200_that_is_no_answer_fails_over_and_counts_against_the_channel(
    answers: Gateway, model: str, upstream_model: str, stream: bool
) -> None:
    key = answers.create_key(f"no-answer-{model}")
    before = len(answers.fake.requests_for(upstream_model))
    assert ask(answers, key, model, stream=stream) == TEXT
    assert len(answers.fake.requests_for(upstream_model)) == before + 1
    [row] = answers.usage(f"no-answer-{model}")
    assert (row["channel"], row["attempts"], row["usage_source"]) == ("backup", 2, "upstream")
    assert row["cost"] == expected_cost(12, 3)
    # breaker_failures = 1: the failure opened the circuit, so the next request skips that channel.
    assert ask(answers, key, model, stream=stream) == TEXT
    assert len(answers.fake.requests_for(upstream_model)) == before + 1


def test_proxy_200_html_on_the_only_channel_is_502_and_costs_nothing(answers: Gateway) -> None:
    key = answers.create_key("html-only")
    response = post(answers, key, "html-only")
    assert response.status_code == 502, response.text
    error = validate("ErrorResponse", response.json())["error"]
    assert error["code"] == "upstream_error" and "the provider answered HTTP 200 with text/html" in error["message"]
    assert "htmlonly" not in error["message"]  # the channel's name is the admin's (issue 14)
    [row] = answers.usage("html-only")
    assert (row["status"], row["cost"]) == (502, 0) and "'htmlonly'" in row["error"]
    assert answers.balance("html-only") == answers.ledger_sum("html-only") == 10**9


def test_proxy_upstream_4xx_body_reaches_the_caller_without_the_channel_key(answers: Gateway) -> None:
    key = answers.create_key("leaky")
    response = post(answers, key, "leaky")
    assert response.status_code == 400
    assert SECRET not in response.text
    error = validate("ErrorResponse", response.json())["error"]
    assert error["message"].startswith("fake cannot parse this request")  # the useful part is kept
    assert error["type"] == "invalid_request_error"


def test_proxy_upstream_401_fails_over_to_the_next_channel(answers: Gateway) -> None:
    key = answers.create_key("creds-then-ok")
    assert ask(answers, key, "creds-then-ok", stream=False) == TEXT
    [row] = answers.usage("creds-then-ok")
    assert (row["channel"], row["attempts"]) == ("backup", 2)


def test_proxy_upstream_401_is_a_502_blaming_the_channel_not_the_callers_key(
    answers: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    key = answers.create_key("creds-only")
    with caplog.at_level(logging.WARNING, logger="tokenbridge"), pytest.raises(openai.APIStatusError) as info:
        answers.client(key).chat.completions.create(model="creds-only", messages=MESSAGES)
    assert not isinstance(info.value, openai.AuthenticationError)
    assert info.value.status_code == 502 and info.value.code == "upstream_error"
    body = info.value.response.json()
    validate("ErrorResponse", body)
    assert "the provider refused the gateway's credentials" in body["error"]["message"]
    assert "badcreds-only" not in body["error"]["message"] and SECRET not in info.value.response.text
    assert "'badcreds-only'" in answers.usage("creds-only")[0]["error"]  # the admin's view names it
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Incorrect API key provided" in logged and SECRET not in logged  # the detail, masked


def test_proxy_every_channel_429_is_a_429_with_the_upstream_retry_after(answers: Gateway) -> None:
    key = answers.create_key("limited")
    before = len(answers.fake.requests_for("fake-429"))
    response = post(answers, key, "limited")
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == "7"
    assert validate("ErrorResponse", response.json())["error"]["code"] == "upstream_rate_limited"
    assert len(answers.fake.requests_for("fake-429")) == before + 2  # both channels were tried
    [row] = answers.usage("limited")
    assert (row["status"], row["cost"]) == (429, 0)


def test_mapping_open_circuits_give_503_with_retry_after_until_the_probe(answers: Gateway) -> None:
    key = answers.create_key("down")
    assert post(answers, key, "down").status_code == 502  # breaker_failures = 1: the circuit opens
    response = post(answers, key, "down")
    assert response.status_code == 503 and response.json()["error"]["code"] == "no_available_channel"
    assert response.headers["retry-after"] == str(COOLDOWN_S)  # the hand clock stands still
