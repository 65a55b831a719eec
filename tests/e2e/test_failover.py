"""Before the first byte reaches the caller, a failing channel hands over to the next one."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import openai
import pytest

from tests.conftest import PRICE, FakeUpstream, Gateway
from tests.e2e.test_chat import MESSAGES, expected_cost
from tests.fakes.server import serve_in_thread
from tests.fakes.upstream import TEXT
from tests.schemas import validate
from tokenbridge.app import create_app
from tokenbridge.settings import load_settings
from tokenbridge.wire import HTTP_PROTOCOL

CREDS_SECRET = "sk-creds-SECRET-never-in-logs-42"
GOOD_SECRET = "sk-good-SECRET-never-in-logs-43"
PRICES = "".join(f"{term} = {value}\n" for term, value in PRICE.items())

CONFIG = f"""
[server]
database = "failover.db"
max_attempts = 4

[[channels]]
name = "dead"                      # nothing listens on port 1: connection refused
base_url = "http://127.0.0.1:1/v1"
models = ["fake-ok", "slow"]
priority = 10

[[channels]]
name = "creds"                     # aiohttp refuses credentials in the URL next to an api_key
base_url = "http://user:pw@HOST/v1"
api_key = "{CREDS_SECRET}"
models = ["fake-ok"]
priority = 9

[[channels]]
name = "broken"                    # answers 500
base_url = "http://HOST/v1"
models = ["fake-ok"]
model_map = {{ "fake-ok" = "fake-500" }}
priority = 5

[[channels]]
name = "good"
base_url = "http://HOST/v1"
api_key = "{GOOD_SECRET}"
models = ["fake-ok"]

[[channels]]
name = "stall"                     # holds its answer past the first-byte timeout
base_url = "http://HOST/v1"
models = ["slow"]
model_map = {{ "slow" = "fake-hold" }}
response_timeout = 0.5             # (a non-stream answer's whole-answer timeout)

[models."fake-ok"]
{PRICES}
[models."slow"]
{PRICES}
"""


@pytest.fixture(scope="module")
def failover(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    fake, url = upstream
    config = tmp_path_factory.mktemp("failover") / "config.toml"
    config.write_text(CONFIG.replace("HOST", url.removeprefix("http://")))
    with serve_in_thread(create_app(load_settings(config)), http=HTTP_PROTOCOL) as gateway_url:
        gateway = Gateway(gateway_url, config, fake)
        yield gateway
        for client in gateway.clients:
            client.close()


def test_failover_reaches_the_good_channel_and_bills_once(failover: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    key = failover.create_key("failover")
    broken_before = len(failover.fake.requests_for("fake-500"))
    with caplog.at_level(logging.WARNING, logger="tokenbridge"):
        answer = failover.client(key).chat.completions.create(model="fake-ok", messages=MESSAGES)
    assert answer.choices[0].message.content == TEXT
    assert len(failover.fake.requests_for("fake-500")) == broken_before + 1
    assert failover.fake.seen[-1].headers["authorization"] == f"Bearer {GOOD_SECRET}"
    [row] = failover.usage("failover")
    assert (row["channel"], row["attempts"], row["status"]) == ("good", 4, 200)
    assert row["cost"] == expected_cost(12, 3)
    assert failover.balance("failover") == failover.ledger_sum("failover") == 10**9 - expected_cost(12, 3)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for channel in ("'dead'", "'creds'", "'broken'"):
        assert channel in logged
    assert CREDS_SECRET not in logged and GOOD_SECRET not in logged and "user:pw" not in logged


def test_failover_timeout_of_the_last_channel_is_504(failover: Gateway) -> None:
    key = failover.create_key("failover-slow")
    failover.fake.arm()
    with pytest.raises(openai.APIStatusError) as info:
        failover.client(key).chat.completions.create(model="slow", messages=MESSAGES)
    assert info.value.status_code == 504 and info.value.code == "upstream_timeout"
    validate("ErrorResponse", info.value.response.json())
    assert failover.fake.hung_up.acquire(timeout=10), "the gateway left the timed-out request open upstream"
    [row] = failover.usage("failover-slow")
    assert (row["end_reason"], row["cost"], row["attempts"]) == ("timeout", 0, 2)
