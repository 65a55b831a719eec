"""The gateway's own pool of upstream connections: its limits are not the channel's faults, and a
connection an upstream spoiled never serves another request.

Issue 11, items 15 (a full pool opened the breaker for everyone) and 17 (a pooled connection
spoiled by an upstream that sent more than its Content-Length).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import FakeUpstream, Gateway, serve_config
from tests.e2e.test_channels import PRICES, HandClock, channel
from tests.e2e.test_upstream_answers import post
from tests.fakes.overlong import OVERLONG_TEXT, OverlongUpstream, serve_overlong
from tests.fakes.upstream import TEXT
from tests.schemas import validate

POOL_CONFIG = (
    """
[server]
database = "pool.db"
max_upstream_connections = 1
breaker_failures = 1
"""
    + channel("holder", ["held"], "fake-hold")
    + channel("quick", ["quick"], "fake-ok", connect_timeout=0.3)  # how long a request waits for a free slot
    + "".join(f'[models."{m}"]\n{PRICES}' for m in ("held", "quick"))
)


@pytest.fixture(scope="module")
def pool(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    fake, url = upstream
    text = POOL_CONFIG.replace("HOST", url.removeprefix("http://"))
    yield from serve_config(text, tmp_path_factory, fake, rng=random.Random(15), clock=HandClock())


def test_client_full_pool_is_503_gateway_busy_and_not_the_channels_fault(pool: Gateway) -> None:
    key = pool.create_key("pool")
    pool.fake.arm()
    held: list[str] = []

    def hold_the_only_connection() -> None:
        held.append(post(pool, key, "held", stream=True).text)

    holder = threading.Thread(target=hold_the_only_connection)
    holder.start()
    try:
        assert pool.fake.holding.acquire(timeout=10), "the held stream never reached the upstream"
        busy = post(pool, key, "quick")
        assert busy.status_code == 503, busy.text
        assert validate("ErrorResponse", busy.json())["error"]["code"] == "gateway_busy"
        assert busy.headers["retry-after"] == "1"
    finally:
        pool.fake.release()
        holder.join(10)
    assert held and held[0].endswith("data: [DONE]\n\n")
    # breaker_failures = 1: had the wait counted against the channel, its circuit would be open now.
    answer = post(pool, key, "quick")
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == TEXT
    rows = {row["model"]: row for row in pool.usage("pool")}
    assert len(pool.usage("pool")) == 3 and rows["held"]["status"] == 200
    assert pool.balance("pool") == pool.ledger_sum("pool")


@pytest.fixture
def overlong(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    tuple[Gateway, OverlongUpstream]
]:  # fmt: skip
    fake, _ = upstream
    with serve_overlong() as (raw, url):
        text = (
            '[server]\ndatabase = "overlong.db"\n\n[[channels]]\nname = "overlong"\n'
            f'base_url = "{url}"\nmodels = ["overlong"]\n\n[models."overlong"]\n{PRICES}'
        )
        for gateway in serve_config(text, tmp_path_factory, fake):
            yield gateway, raw


@pytest.mark.parametrize(
    "extra",
    [
        b"garbage past the content length",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    ],
    ids=["garbage", "a-whole-response"],
)
def test_client_never_reuses_a_connection_spoiled_past_its_content_length(
    overlong: tuple[Gateway, OverlongUpstream], extra: bytes
) -> None:
    gateway, raw = overlong
    key = gateway.create_key("overlong")
    first = post(gateway, key, "overlong")
    assert first.status_code == 200 and first.json()["choices"][0]["message"]["content"] == OVERLONG_TEXT
    raw.spoil(extra)  # lands on the connection now resting in the gateway's pool
    second = post(gateway, key, "overlong")
    assert second.status_code == 200, second.text
    assert second.json()["choices"][0]["message"]["content"] == OVERLONG_TEXT  # not the bytes meant for nobody
    assert raw.connections == 2  # the spoiled connection was dropped, a fresh one answered
    assert gateway.balance("overlong") == gateway.ledger_sum("overlong")
