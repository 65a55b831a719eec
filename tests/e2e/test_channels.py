"""Channels that spread load, fail over before the first byte, and heal (SPEC §7)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.conftest import PRICE, FakeUpstream, Gateway
from tests.e2e.test_chat import MESSAGES, expected_cost
from tests.fakes.server import serve_in_thread
from tests.fakes.upstream import ERROR_400, TEXT
from tokenbridge.app import create_app
from tokenbridge.settings import load_settings
from tokenbridge.wire import HTTP_PROTOCOL

COOLDOWN_S = 5.0


class HandClock:
    """The breakers' clock, moved by the test: back-offs elapse when the test says, never by racing it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


PRICES = "".join(f"{term} = {value}\n" for term, value in PRICE.items())


def channel(name: str, models: list[str], upstream_model: str, **extra: object) -> str:
    mapping = ", ".join(f'"{m}" = "{upstream_model}"' for m in models)
    lines = [f'name = "{name}"', 'base_url = "http://HOST/v1"', f"models = {orjson.dumps(models).decode()}",
             f"model_map = {{ {mapping} }}"]  # fmt: skip
    lines += [f"{k} = {orjson.dumps(v).decode()}" for k, v in extra.items()]
    return "[[channels]]\n" + "\n".join(lines) + "\n"


CONFIG = (
    f"""
[server]
database = "channels.db"
breaker_failures = 2
breaker_cooldown = {COOLDOWN_S}
breaker_max_cooldown = 10
"""
    + channel("w3", ["weighted"], "fake-ok", weight=3)
    + channel("w1", ["weighted"], "fake-ok", weight=1)
    + channel("spare", ["weighted"], "fake-ok", priority=-1)
    + channel("stalls", ["stall-then-ok"], "fake-hold", priority=10, response_timeout=0.2, first_byte_timeout=0.2)
    + channel("patient", ["long-answer"], "fake-hold", first_byte_timeout=0.1, response_timeout=30)
    + channel("rejects", ["bad-request"], "fake-400", priority=10)
    + channel("idles", ["goes-quiet"], "fake-hold", idle_timeout=0.3)
    + channel("flaky", ["flaky"], "fake-flaky", priority=10)
    + channel("backup", ["flaky", "stall-then-ok", "bad-request"], "fake-ok")
    + "".join(
        f'[models."{m}"]\n{PRICES}'
        for m in ("weighted", "stall-then-ok", "bad-request", "flaky", "goes-quiet", "long-answer")
    )
)


@pytest.fixture(scope="module")
def clock() -> HandClock:
    return HandClock()


@pytest.fixture(scope="module")
def channels(
    upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory, clock: HandClock
) -> Iterator[Gateway]:
    fake, url = upstream
    config = tmp_path_factory.mktemp("channels") / "config.toml"
    config.write_text(CONFIG.replace("HOST", url.removeprefix("http://")))
    app = create_app(load_settings(config), rng=random.Random(20261125), clock=clock)
    with serve_in_thread(app, http=HTTP_PROTOCOL) as gateway_url:
        gateway = Gateway(gateway_url, config, fake)
        yield gateway
        for client in gateway.clients:
            client.close()


def test_weights_share_traffic_three_to_one_and_priority_is_respected(channels: Gateway) -> None:
    client = channels.client(channels.create_key("weights", credit_usd="5"))
    for _ in range(400):
        client.chat.completions.create(model="weighted", messages=MESSAGES)
    served = Counter(r["channel"] for r in channels.usage("weights"))
    # Binomial(400, 3/4): mean 300, sigma 8.66; 4 sigma either side. The lower priority never serves.
    assert 265 <= served["w3"] <= 335 and served["w3"] + served["w1"] == 400 and served["spare"] == 0


def test_first_byte_stall_fails_over_and_bills_once(channels: Gateway) -> None:
    channels.fake.arm()
    client = channels.client(channels.create_key("stall"))
    assert client.chat.completions.create(model="stall-then-ok", messages=MESSAGES).choices[0].message.content == TEXT
    [row] = channels.usage("stall")
    assert (row["channel"], row["attempts"], row["cost"]) == ("backup", 2, expected_cost(12, 3))
    assert channels.fake.hung_up.acquire(timeout=10), "the stalled upstream request was left open"


def test_upstream_400_passes_through_and_is_not_retried(channels: Gateway) -> None:
    client = channels.client(channels.create_key("reject"))
    seen_400, seen_ok = len(channels.fake.requests_for("fake-400")), len(channels.fake.requests_for("fake-ok"))
    raw = httpx.post(channels.url + "/v1/chat/completions", json={"model": "bad-request", "messages": MESSAGES},
                     headers={"Authorization": f"Bearer {client.api_key}"})  # fmt: skip
    assert raw.status_code == 400 and raw.json() == ERROR_400
    assert len(channels.fake.requests_for("fake-400")) == seen_400 + 1
    assert len(channels.fake.requests_for("fake-ok")) == seen_ok  # the next channel was never asked
    [row] = channels.usage("reject")
    assert (row["channel"], row["attempts"], row["status"]) == ("rejects", 1, 400)


def flaky_calls(gateway: Gateway) -> int:
    return len(gateway.fake.requests_for("fake-flaky"))


def test_breaker_stops_traffic_to_a_dead_channel_probes_once_and_lets_it_heal(
    channels: Gateway, clock: HandClock
) -> None:
    client = channels.client(channels.create_key("breaker", credit_usd="5"))
    channels.fake.flaky_down = True
    ask = lambda: client.chat.completions.with_raw_response.create(model="flaky", messages=MESSAGES)  # noqa: E731
    start = flaky_calls(channels)
    for _ in range(2):  # breaker_failures = 2: each fails over to the backup, then the circuit opens
        assert ask().parse().choices[0].message.content == TEXT
    assert flaky_calls(channels) == start + 2
    for _ in range(10):
        ask()
    assert flaky_calls(channels) == start + 2, "an open circuit must send no traffic"
    clock.now += COOLDOWN_S  # the back-off elapses
    ask()
    assert flaky_calls(channels) == start + 3, "one probe after the back-off"
    for _ in range(5):
        ask()
    assert flaky_calls(channels) == start + 3, "the failed probe doubled the back-off"
    channels.fake.flaky_down = False
    clock.now += COOLDOWN_S
    ask()
    assert flaky_calls(channels) == start + 3, "half the doubled back-off: still no probe"
    clock.now += COOLDOWN_S  # the doubled back-off is over
    ask()
    assert flaky_calls(channels) == start + 4
    for _ in range(3):
        ask()
    assert flaky_calls(channels) == start + 7, "healed: traffic is back"
    rows = channels.usage("breaker")
    assert [r["channel"] for r in rows[-4:]] == ["flaky"] * 4
    assert all(r["status"] == 200 for r in rows) and len(rows) == 2 + 10 + 1 + 5 + 1 + 1 + 3


def test_channels_check_reports_probe_and_circuit_state(channels: Gateway) -> None:
    channels.fake.flaky_down = True
    client = channels.client(channels.create_key("check"))
    for _ in range(2):
        client.chat.completions.create(model="flaky", messages=MESSAGES)  # opens the circuit again
    deadline = time.monotonic() + 10  # the server stores a transition right after the request; poll for it
    while True:
        result = channels.cli("channels", "check", "--json")
        rows = {r["name"]: r for r in orjson.loads(result.stdout)}
        if rows["flaky"]["circuits"]["flaky"]["state"] == "open" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert result.returncode == 1  # a probe failed: fake-flaky is down
    assert rows["flaky"]["probe"] == "HTTP 500" and rows["flaky"]["ok"] is False
    assert rows["flaky"]["circuits"]["flaky"]["state"] == "open"
    assert "consecutive failures" in rows["flaky"]["circuits"]["flaky"]["reason"]
    assert rows["backup"]["probe"] == "ok" and rows["backup"]["latency_ms"] >= 0
    channels.fake.flaky_down = False
    text = channels.cli("channels", "check")
    assert "flaky: open" in text.stdout and "consecutive failures" in text.stdout
    assert rows["rejects"]["probe"] == "HTTP 400" and "did not answer in time" in rows["stalls"]["probe"]
    assert rows["patient"]["ok"] is False  # a probe waits a stream's first byte (0.1 s here), not 30 s


def test_stream_silent_past_idle_timeout_ends_with_an_error_event(channels: Gateway) -> None:
    channels.fake.arm()
    key = channels.create_key("idle")
    response = httpx.post(channels.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": "goes-quiet", "messages": MESSAGES, "stream": True}, timeout=30)  # fmt: skip
    assert response.status_code == 200 and b"[DONE]" not in response.content
    last = orjson.loads(response.content.strip().split(b"\n\n")[-1].removeprefix(b"data: "))
    assert last["error"]["code"] == "upstream_timeout" and "the provider went silent" in last["error"]["message"]
    assert "idles" not in last["error"]["message"]  # a key holder never sees a channel's name (issue 14)
    [row] = channels.usage("idle")
    assert "'idles'" in row["error"]  # the admin's row does
    assert (row["end_reason"], row["usage_source"], row["completion_tokens"]) == ("timeout", "estimated", 3)
    assert channels.fake.hung_up.acquire(timeout=10), "the silent upstream was left open"


def test_non_stream_answer_may_take_longer_than_a_streams_first_byte(channels: Gateway) -> None:
    """A non-stream answer is all generated before its head: first_byte_timeout (0.1 s here) must not cut
    it, or every long answer would be abandoned, retried elsewhere and billed upstream twice."""
    channels.fake.arm()
    client = channels.client(channels.create_key("patient"))
    answer: list[str] = []
    asking = threading.Thread(
        target=lambda: answer.append(
            client.chat.completions.create(model="long-answer", messages=MESSAGES).choices[0].message.content or ""
        )
    )
    asking.start()
    assert channels.fake.holding.acquire(timeout=10)
    time.sleep(0.5)  # the upstream "generates" for five times the first-byte timeout
    channels.fake.release()
    asking.join(30)
    assert answer == [TEXT]
    [row] = channels.usage("patient")
    assert (row["channel"], row["attempts"], row["status"]) == ("patient", 1, 200)
