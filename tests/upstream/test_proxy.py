"""The proxy (upstream/proxy.py): its pure helpers, and the stage as an ASGI app against loopback upstreams:
failover order, max_attempts, no failover after the first byte, the breakers told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fakes.server import free_port
from tests.fakes.upstream import TEXT, FakeUpstream
from tests.stages.kit import (
    Result,
    breakers,
    chat_body,
    make_call,
    proxy_stage,
    run_stage,
    upstream_client,
    write_settings,
)
from tokenbridge.call import Call
from tokenbridge.circuits import Transition
from tokenbridge.errors import ClientGone, UpstreamError
from tokenbridge.settings import Channel, Settings
from tokenbridge.upstream.breaker import Breakers
from tokenbridge.upstream.client import UpstreamClient
from tokenbridge.upstream.proxy import retry_after_s


@pytest.mark.parametrize(("value", "seconds"), [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), (None, None), ("", None),
                                                ("soon", None), ("inf", None), ("nan", None),
                                                ("Wed, 21 Oct 2015 07:28:00", None)])  # fmt: skip
def test_proxy_retry_after_reads_seconds_and_refuses_what_it_cannot_read(
    value: str | None, seconds: float | None
) -> None:
    assert retry_after_s(value) == seconds


def test_proxy_retry_after_reads_an_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    seconds = retry_after_s(later)
    assert seconds is not None and 100 < seconds <= 120
    assert retry_after_s(format_datetime(datetime(2015, 10, 21, tzinfo=UTC), usegmt=True)) == 0.0  # past: now


# --- the proxy as an ASGI app, against real loopback upstreams (tests/stages/kit.py) --------------------------------

CALLER_SECRET = "sk-tb-caller-SECRET-never-forwarded-0123456789"
# Each channel sends its own key ("key-<name>"), so the fake upstream's log says which one it heard from.
# What they answer is the fake's model they ask for (tests/fakes/upstream.py); "unreachable" listens nowhere.
UPSTREAM_MODELS = {"down": "fake-500", "broken": "fake-break", "held": "fake-hold", "up": "fake-ok"}


def channels_toml(upstream: str, nowhere: str) -> str:
    def channel(name: str, base_url: str, model_map: str) -> str:
        head = f'[[channels]]\nname = "{name}"\nbase_url = "{base_url}/v1"\napi_key = "key-{name}"\n'
        return head + f'models = ["m"]\n{model_map}\n'

    mapped = [channel(name, upstream, f'model_map = {{ "m" = "{model}" }}') for name, model in UPSTREAM_MODELS.items()]
    return "".join(mapped) + channel("unreachable", nowhere, "")


@dataclass
class Rig:
    """The proxy on its own: settings naming the channels above, a real client, breakers that open at once."""

    settings: Settings
    fake: FakeUpstream
    client: UpstreamClient
    breakers: Breakers
    changes: list[Transition]
    first_seen: int  # the fake upstream serves the whole session: this test's requests come after this index

    def channels(self, *names: str) -> tuple[Channel, ...]:
        by_name = {c.name: c for c in self.settings.channels}
        return tuple(by_name[name] for name in names)

    def asked(self) -> list[str]:
        """Which channels the upstream heard from in this test, in order (each sends its own key)."""
        return [s.headers["authorization"].removeprefix("Bearer key-") for s in self.fake.seen[self.first_seen :]]

    async def run(self, *names: str, stream: bool = False, **kwargs: Any) -> tuple[Result, Call]:
        call = make_call(self.settings, body=chat_body(stream=stream), candidates=self.channels(*names))
        headers = [(b"authorization", f"Bearer {CALLER_SECRET}".encode())]
        stage = proxy_stage(client=self.client, breakers=self.breakers)
        return await run_stage(stage, call, headers=headers, **kwargs), call


@pytest.fixture
async def rig(upstream: tuple[FakeUpstream, str], tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    fake, url = upstream
    server = getattr(request, "param", {})
    settings = write_settings(tmp_path, channels=channels_toml(url, f"http://127.0.0.1:{free_port()}"), **server)
    breakers_, changes = breakers()
    async with upstream_client(settings) as client:
        yield Rig(settings, fake, client, breakers_, changes, len(fake.seen))


def opened(rig: Rig) -> list[str]:
    return [change.channel for change in rig.changes if change.state == "open"]


async def test_proxy_fails_over_in_candidate_order_past_a_5xx_and_a_connect_error(rig: Rig) -> None:
    result, call = await rig.run("down", "unreachable", "up")
    assert result.error is None and result.status == 200
    assert orjson.loads(result.body)["choices"][0]["message"]["content"] == TEXT
    assert rig.asked() == ["down", "up"]  # the unreachable one never got a byte to the fake
    assert (call.attempts, call.channel and call.channel.name, call.upstream_model) == (3, "up", "fake-ok")
    # Each failure is recorded against its channel (these breakers open on the first); the answer is not.
    assert opened(rig) == ["down", "unreachable"]
    assert rig.breakers.state("up", "m") == "closed"


async def test_proxy_tries_candidates_in_the_order_given_and_stops_at_the_first_answer(rig: Rig) -> None:
    result, call = await rig.run("up", "down", "unreachable")
    assert result.error is None and result.status == 200
    assert rig.asked() == ["up"] and call.attempts == 1 and rig.changes == []


@pytest.mark.parametrize("rig", [{"max_attempts": 2}], indirect=True)
async def test_proxy_stops_after_max_attempts(rig: Rig) -> None:
    result, call = await rig.run("down", "unreachable", "up")
    assert isinstance(result.error, UpstreamError) and result.status == 502 and not result.started
    assert "2 tried" in result.error.message
    assert rig.asked() == ["down"] and call.attempts == 2  # "up" would have answered: it was never asked


async def test_proxy_does_not_fail_over_once_the_first_byte_reached_the_caller(rig: Rig) -> None:
    result, call = await rig.run("broken", "up", stream=True)
    assert result.status == 200 and b'"content":"Hello"' in result.body  # the caller has the start of an answer
    assert isinstance(result.error, UpstreamError)  # intake turns it into a final error event, no [DONE]
    assert b"[DONE]" not in result.body
    assert rig.asked() == ["broken"] and call.attempts == 1  # not a second answer spliced onto the first
    assert opened(rig) == ["broken"]  # the break counts against the channel


async def test_proxy_skips_a_candidate_whose_circuit_is_open(rig: Rig) -> None:
    rig.breakers.record("down", "m", ok=False, reason="earlier")  # open, and the clock never moves on
    result, call = await rig.run("down", "up")
    assert result.error is None and rig.asked() == ["up"] and call.attempts == 1


async def test_proxy_every_candidate_failing_is_a_502_naming_the_last_failure(rig: Rig) -> None:
    result, call = await rig.run("down", "unreachable")
    assert isinstance(result.error, UpstreamError) and result.status == 502
    assert "could not be reached" in result.error.message and call.attempts == 2


async def test_proxy_forwards_the_channels_key_never_the_callers(rig: Rig) -> None:
    result, _ = await rig.run("up")
    assert result.error is None
    (seen,) = rig.fake.seen[rig.first_seen :]
    assert seen.headers["authorization"] == "Bearer key-up"
    assert all(CALLER_SECRET not in value for value in seen.headers.values())
    assert CALLER_SECRET.encode() not in seen.raw


async def test_proxy_a_caller_that_leaves_closes_the_upstream_request_without_blaming_the_channel(rig: Rig) -> None:
    rig.fake.arm()  # fake-hold waits until released
    holding = rig.fake.holding
    result, call = await rig.run("held", "up", leave_when=lambda: asyncio.to_thread(holding.acquire, timeout=10))
    assert isinstance(result.error, ClientGone) and not result.started
    assert await asyncio.to_thread(rig.fake.hung_up.acquire, timeout=10)  # the fake saw the gateway hang up
    assert rig.asked() == ["held"] and call.attempts == 1 and rig.changes == []
