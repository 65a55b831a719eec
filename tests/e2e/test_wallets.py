"""One wallet, many keys (SPEC §9, issue 13 acceptance 2): the admission step checks the account's
wallet and the key's spend limit in one atomic step, across keys and across worker processes.

Every request is a `fake-hold` one (streams and not): the fake upstream keeps each admitted request
open until the test releases it, so all of them are in flight at once and no settled charge can
free money for a late one. The test waits for exactly the affordable number to reach the upstream
and for every other one to be refused, and only then releases them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import PRICE, Gateway, config_text
from tests.e2e.test_workers import Workers
from tests.fakes.procnet import owner_of_client_port
from tests.fakes.server import free_port
from tests.fakes.upstream import FakeUpstream
from tokenbridge.store.accounts import get_account_by_name
from tokenbridge.store.db import Database
from tokenbridge.store.ledger import get_ledger_sum

MAX_TOKENS = 1000
PER_KEY = 20  # concurrent requests of each key, half of them streams
WAIT_S = 60  # for one request to arrive or be refused: a generous cap, never a sleep


def bodies() -> tuple[bytes, bytes]:
    """A JSON and a stream body of the same length, so both hold the same amount."""
    made = [
        orjson.dumps({"model": "fake-hold", "messages": [{"role": "user", "content": "race" + pad}],
                      "max_tokens": MAX_TOKENS, "stream": stream})
        for stream, pad in ((False, ""), (True, " "))
    ]  # fmt: skip
    assert len(made[0]) == len(made[1])
    return made[0], made[1]


def hold_of(body: bytes) -> int:
    """nano-USD: every body byte a prompt token at the input price, plus max_tokens at the output price."""
    return len(body) * int(Decimal(PRICE["input"]) * 1000) + MAX_TOKENS * int(Decimal(PRICE["output"]) * 1000)


def usd(nano: int) -> str:
    return str(Decimal(nano) / 10**9)


def cli_key(gateway: Gateway, *args: str) -> str:
    done = gateway.cli("keys", "create", *args, "--json")
    assert done.returncode == 0, done.stderr
    return str(orjson.loads(done.stdout)["key"])


Who = Callable[[httpx.Response], int]


def race(gateway: Gateway, secrets: list[str], affordable: int, who: Who | None = None) -> list[tuple[int, bytes, int]]:
    """PER_KEY requests of each key at once; returns (status, body, serving pid or 0) of each.
    Asserts that exactly `affordable` reach the upstream while every other one is refused."""
    json_body, stream_body = bodies()

    def one(secret: str, body: bytes) -> tuple[int, bytes, int]:
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        with (
            httpx.Client(timeout=WAIT_S * 2) as http,
            http.stream("POST", gateway.url + "/v1/chat/completions", content=body, headers=headers) as answer,
        ):
            pid = who(answer) if who else 0
            return answer.status_code, answer.read(), pid

    gateway.fake.arm()
    jobs = [(s, json_body if i % 2 else stream_body) for s in secrets for i in range(PER_KEY)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures: list[Future[tuple[int, bytes, int]]] = [pool.submit(one, s, b) for s, b in jobs]
        try:
            for _ in range(affordable):  # each admitted request signals as it reaches the held upstream
                assert gateway.fake.holding.acquire(timeout=WAIT_S), "fewer requests than affordable got through"
            refused = 0
            for done in as_completed(futures, timeout=WAIT_S):  # every other one is answered meanwhile
                assert done.result()[0] == 429, done.result()
                refused += 1
                if refused == len(jobs) - affordable:
                    break
            assert not gateway.fake.holding.acquire(blocking=False), "one more than affordable reached the upstream"
        finally:
            gateway.fake.release()
        return [f.result() for f in futures]


def account_books(gateway: Gateway, account: str) -> tuple[int, int, int]:
    """(balance, Σ ledger, open holds) of the account."""

    async def work(db: Database) -> tuple[int, int, int]:
        found = await get_account_by_name(db, account)
        assert found is not None
        async with db.reader.execute("SELECT COUNT(*) FROM holds WHERE account_id = ?", (found.id,)) as cur:
            holds = int((await cur.fetchone())[0])
        return found.balance, await get_ledger_sum(db, found.id), holds

    return gateway.db_run(work)  # type: ignore[no-any-return]


def wallet_scenario(gateway: Gateway, account: str, who: Who | None = None) -> list[tuple[int, bytes, int]]:
    """Two keys of one account, 20 concurrent requests each, a wallet with room for exactly 5."""
    hold = hold_of(bodies()[0])
    first = cli_key(gateway, f"{account}-a", "--account", account, "--credit", usd(5 * hold + hold - 1))
    second = cli_key(gateway, f"{account}-b", "--account", account)
    results = race(gateway, [first, second], affordable=5, who=who)
    ok = [body for status, body, _ in results if status == 200]
    assert len(ok) == 5
    assert all(b'"content"' in body for body in ok)  # JSON answers and whole streams
    assert all(body.rstrip().endswith(b"data: [DONE]") for body in ok if body.startswith(b"data:"))
    for status, body, _ in results:
        if status == 429:
            error = orjson.loads(body)["error"]
            assert error["code"] == "insufficient_quota" and "Your balance is too low" in error["message"]
    balance, ledger_sum, holds = account_books(gateway, account)
    assert 0 <= balance == ledger_sum and holds == 0
    assert balance == 6 * hold - 1 - sum(row["cost"] for key in ("a", "b") for row in gateway.usage(f"{account}-{key}"))
    return results


def key_limit_scenario(gateway: Gateway, account: str, who: Who | None = None) -> list[tuple[int, bytes, int]]:
    """A key whose spend limit is 3 requests' worth, under a wallet of 100: exactly 3 of 20 get through."""
    hold = hold_of(bodies()[0])
    limited = cli_key(
        gateway, f"{account}-k", "--account", account, "--credit", usd(100 * hold),
        "--spend-limit", usd(3 * hold), "--period", "day",
    )  # fmt: skip
    results = race(gateway, [limited], affordable=3, who=who)
    assert sorted(status for status, _, _ in results) == [200] * 3 + [429] * (PER_KEY - 3)
    for status, body, _ in results:
        if status == 429:
            error = orjson.loads(body)["error"]
            assert error["code"] == "insufficient_quota" and "spend limit" in error["message"]
            assert "per day" in error["message"] and "balance is not the problem" in error["message"]
    balance, ledger_sum, holds = account_books(gateway, account)
    assert balance == ledger_sum == 100 * hold - sum(row["cost"] for row in gateway.usage(f"{account}-k"))
    assert holds == 0
    return results


def test_wallet_two_keys_of_one_account_get_exactly_what_it_holds(gateway: Gateway) -> None:
    wallet_scenario(gateway, "wallet-one")


def test_wallet_a_key_spend_limit_admits_exactly_its_worth(gateway: Gateway) -> None:
    key_limit_scenario(gateway, "limit-one")


# --- the same across `serve --workers 2` --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workers(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc to see the workers")
    config = tmp_path_factory.mktemp("wallet-workers") / "config.toml"
    config.write_text(config_text(upstream[1]))
    running = Workers(config, free_port())
    yield running
    running.served.stop()


@pytest.fixture(scope="module")
def two_workers(workers: Workers, upstream: tuple[FakeUpstream, str]) -> Iterator[tuple[Gateway, Who]]:
    config = Path(workers.served.process.args[workers.served.process.args.index("--config") + 1])
    gateway = Gateway(f"http://127.0.0.1:{workers.port}", config, upstream[0])

    def who(answer: httpx.Response) -> int:
        client_port = answer.extensions["network_stream"].get_extra_info("client_addr")[1]
        return owner_of_client_port(workers.pids, workers.port, client_port) or 0

    yield gateway, who


def served_by_both(results: list[tuple[int, Any, int]], workers: Workers) -> None:
    assert set(workers.pids) <= {pid for _, _, pid in results}, "one worker answered every request"


def test_wallet_two_keys_across_two_workers_get_exactly_what_it_holds(
    two_workers: tuple[Gateway, Who], workers: Workers
) -> None:
    gateway, who = two_workers
    served_by_both(wallet_scenario(gateway, "wallet-two", who), workers)


def test_wallet_a_key_spend_limit_holds_across_two_workers(two_workers: tuple[Gateway, Who], workers: Workers) -> None:
    gateway, who = two_workers
    served_by_both(key_limit_scenario(gateway, "limit-two", who), workers)
