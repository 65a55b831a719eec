"""Money in the store (store/ledger.py, with keys.py and usage.py) against a real SQLite file.

The invariants: balance == SUM(ledger) after every commit; a hold fits only into balance − open holds;
settling writes one usage row, at most one charge and drops the hold, in one transaction.
"""

from __future__ import annotations

import asyncio
import string
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenbridge.money import MAX_NANO
from tokenbridge.process import ProcessId, this_process
from tokenbridge.store.accounts import AccountNotFound, BalanceOutOfRange
from tokenbridge.store.db import Database
from tokenbridge.store.keys import (
    DISPLAY_PREFIX_CHARS,
    KeyExists,
    KeyNotFound,
    KeyRecord,
    count_keys,
    get_key_by_hash,
    get_key_by_name,
    hash_secret,
    insert_key_with_account,
    list_keys,
    revoke_key,
)
from tokenbridge.store.ledger import (
    RATE_WINDOW_S,
    DuplicateRequestId,
    Refusal,
    get_ledger_sum,
    insert_credit,
    release_dead_holds,
    reserve_hold,
    settle_hold,
)
from tokenbridge.store.usage import UsageRow, list_usage, sum_usage, sum_usage_series

T0 = 1_750_000_000.0  # a fixed time for usage rows (2025-06-15 UTC), long outside any rate window
NO_MONEY = Refusal("wallet")
# A process that is gone: this pid, but started in another boot (as a reused pid would be, later).
GONE = str(ProcessId(this_process().pid, "another-boot/1"))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "t.db")
    try:
        yield database
    finally:
        await database.close()


def usage_row(key_id: int, request_id: str, cost: int, *, model: str = "m", created_at: float = T0) -> UsageRow:
    return UsageRow(
        request_id=request_id,
        created_at=created_at,
        key_id=key_id,
        route="chat",
        model=model,
        channel="fake",
        upstream_model=model,
        status=200,
        stream=False,
        prompt_tokens=10,
        completion_tokens=5,
        cached_tokens=0,
        cost=cost,
        usage_source="upstream",
        end_reason="done",
        attempts=1,
        latency_ms=12.5,
        ttfb_ms=3.25,
        error=None,
    )


async def new_key(db: Database, name: str = "k", credit: int = 0, **kwargs: Any) -> KeyRecord:
    record, _ = await insert_key_with_account(db, name=name, credit=credit, **kwargs)
    return record


async def balance(db: Database, name: str = "k") -> int:
    record = await get_key_by_name(db, name)
    assert record is not None
    return record.balance


async def rows(db: Database, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with db.reader.execute(sql, params) as cur:
        return [tuple(row) for row in await cur.fetchall()]


async def open_holds(db: Database) -> dict[str, int]:
    return {rid: amount for rid, amount in await rows(db, "SELECT request_id, amount FROM holds")}


async def settled(db: Database, key: KeyRecord, request_id: str, cost: int, **kwargs: Any) -> None:
    """A whole request: its hold, then its settle."""
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id=request_id, amount=cost) is None
    await settle_hold(db, usage_row(key.id, request_id, cost, **kwargs))


# --- insert_credit, get_ledger_sum --------------------------------------------------------------------------------


async def test_insert_key_opening_credit_is_a_ledger_row(db: Database) -> None:
    key = await new_key(db, credit=5_000)
    assert key.balance == 5_000
    assert await rows(db, "SELECT kind, amount, note FROM ledger") == [("credit", 5_000, "opening credit")]
    assert await get_ledger_sum(db, key.account_id) == 5_000


async def test_insert_key_no_ledger_row_without_credit(db: Database) -> None:
    key = await new_key(db)
    assert await rows(db, "SELECT * FROM ledger") == []
    assert await get_ledger_sum(db, key.account_id) == 0


async def test_insert_credit_positive_is_kind_credit(db: Database) -> None:
    key = await new_key(db, credit=100)
    assert await insert_credit(db, "k", 250, note="top-up") == 350
    assert (await rows(db, "SELECT kind, amount, note FROM ledger ORDER BY id"))[-1:] == [("credit", 250, "top-up")]
    assert await balance(db) == await get_ledger_sum(db, key.account_id) == 350


async def test_insert_credit_negative_is_kind_correction(db: Database) -> None:
    key = await new_key(db, credit=100)
    assert await insert_credit(db, "k", -30) == 70
    assert await rows(db, "SELECT kind, amount FROM ledger ORDER BY id") == [("credit", 100), ("correction", -30)]
    assert await balance(db) == await get_ledger_sum(db, key.account_id) == 70


async def test_insert_credit_unknown_account_raises_and_writes_nothing(db: Database) -> None:
    with pytest.raises(AccountNotFound):
        await insert_credit(db, "nobody", 100)
    assert await rows(db, "SELECT * FROM ledger") == []


@pytest.mark.parametrize(("start", "amount"), [(MAX_NANO, 1), (MAX_NANO - 5, 6), (-MAX_NANO, -1), (1, MAX_NANO)])
async def test_insert_credit_past_the_integer_range_changes_nothing(db: Database, start: int, amount: int) -> None:
    # Past ±(2**63 - 1) SQLite stores a REAL: later reads fail and the ledger sum overflows. The bound is in
    # the UPDATE itself, so nothing is written, not even a ledger row.
    key = await new_key(db, credit=max(start, 0))
    if start < 0:
        await insert_credit(db, "k", start)
    ledger_before = await rows(db, "SELECT * FROM ledger")
    with pytest.raises(BalanceOutOfRange, match="the most a balance holds"):
        await insert_credit(db, "k", amount)
    assert await rows(db, "SELECT * FROM ledger") == ledger_before
    assert await rows(db, "SELECT typeof(balance) FROM accounts") == [("integer",)]
    assert await balance(db) == await get_ledger_sum(db, key.account_id) == start


async def test_insert_credit_up_to_the_integer_range_exactly(db: Database) -> None:
    key = await new_key(db, credit=MAX_NANO - 1)
    assert await insert_credit(db, "k", 1) == MAX_NANO
    assert await insert_credit(db, "k", -MAX_NANO) == 0
    assert await insert_credit(db, "k", -MAX_NANO) == -MAX_NANO
    assert await balance(db) == await get_ledger_sum(db, key.account_id) == -MAX_NANO


async def test_insert_key_refuses_an_opening_credit_past_the_integer_range(db: Database) -> None:
    with pytest.raises(BalanceOutOfRange):
        await new_key(db, credit=MAX_NANO + 1)
    assert await count_keys(db) == 0


# --- reserve_hold -------------------------------------------------------------------------------------------------


async def test_reserve_hold_succeeds_when_amount_equals_available(db: Database) -> None:
    key = await new_key(db, credit=1_000)
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r1", amount=300) is None
    # 1000 − 300 = 700: exactly what is left.
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r2", amount=700) is None
    assert await open_holds(db) == {"r1": 300, "r2": 700}
    assert await balance(db) == 1_000  # a hold is not a charge


async def test_reserve_hold_refuses_one_nano_over_available(db: Database) -> None:
    key = await new_key(db, credit=1_000)
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r1", amount=300) is None
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r2", amount=701) == NO_MONEY
    assert await open_holds(db) == {"r1": 300}


async def test_reserve_hold_counts_only_this_keys_holds(db: Database) -> None:
    a, b = await new_key(db, "a", credit=1_000), await new_key(db, "b", credit=1_000)
    assert await reserve_hold(db, key_id=a.id, account_id=a.account_id, request_id="ra", amount=1_000) is None
    assert await reserve_hold(db, key_id=b.id, account_id=b.account_id, request_id="rb", amount=1_000) is None
    assert await reserve_hold(db, key_id=a.id, account_id=a.account_id, request_id="ra2", amount=1) == NO_MONEY


async def test_reserve_hold_unknown_key_raises(db: Database) -> None:
    with pytest.raises(KeyNotFound):
        await reserve_hold(db, key_id=999, account_id=999, request_id="r1", amount=0)
    assert await open_holds(db) == {}


async def test_reserve_hold_concurrent_calls_never_exceed_balance(db: Database) -> None:
    key = await new_key(db, credit=10_000)
    results = await asyncio.gather(
        *(
            reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id=f"r{i}", amount=1_000)
            for i in range(25)
        )
    )
    assert results.count(None) == 10
    assert results.count(NO_MONEY) == 15
    assert sum((await open_holds(db)).values()) == 10_000


async def test_reserve_hold_concurrent_calls_from_two_connections_never_exceed_balance(
    db: Database, tmp_path: Path
) -> None:
    # A second Database on the same file is what another worker process has: its own lock, its own writer.
    key = await new_key(db, credit=10_000)
    async with await Database.open(tmp_path / "t.db") as other:
        results = await asyncio.gather(
            *(
                reserve_hold(
                    db if i % 2 else other, key_id=key.id, account_id=key.account_id, request_id=f"r{i}", amount=700
                )
                for i in range(30)
            )
        )
    assert results.count(None) == 10_000 // 700
    assert sum((await open_holds(db)).values()) == 700 * (10_000 // 700)


async def test_reserve_hold_reused_id_of_open_hold_raises(db: Database) -> None:
    key = await new_key(db, credit=1_000)
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r1", amount=100) is None
    with pytest.raises(DuplicateRequestId):
        await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r1", amount=100)
    assert await open_holds(db) == {"r1": 100}


async def test_reserve_hold_reused_id_of_settled_request_raises(db: Database) -> None:
    key = await new_key(db, credit=1_000)
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r1", amount=100) is None
    await settle_hold(db, usage_row(key.id, "r1", cost=40))
    with pytest.raises(DuplicateRequestId):
        await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r1", amount=100)
    assert await open_holds(db) == {}


async def test_reserve_hold_rpm_counts_recent_requests_and_open_holds(db: Database) -> None:
    key = await new_key(db, credit=10_000, rpm=3)
    now = time.time()
    await settled(db, key, "r1", 10, created_at=now - 30)  # in the window: counts
    await settled(db, key, "r0", 10, created_at=now - RATE_WINDOW_S - 1)  # out of the window: does not
    assert (
        await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r2", amount=10) is None
    )  # r1 and r2 (in flight): 2
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r3", amount=10) is None  # 3

    refusal = await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r4", amount=10)

    assert refusal is not None and refusal.reason == "rpm"
    assert 29 <= refusal.retry_after_s <= 30  # the request at now − 30 s leaves the window in 30 s
    assert set(await open_holds(db)) == {"r2", "r3"}


async def test_reserve_hold_tpm_counts_tokens_of_recent_requests(db: Database) -> None:
    key = await new_key(db, "k", credit=10_000, tpm=15)
    roomy = await new_key(db, "roomy", credit=10_000, tpm=16)
    for k in (key, roomy):
        await settled(db, k, f"{k.name}-1", 10, created_at=time.time())  # 10 prompt + 5 completion tokens

    refusal = await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="k-2", amount=10)

    assert refusal is not None and refusal.reason == "tpm" and 1 <= refusal.retry_after_s <= RATE_WINDOW_S
    assert await reserve_hold(db, key_id=roomy.id, account_id=roomy.account_id, request_id="roomy-2", amount=10) is None


# --- settle_hold --------------------------------------------------------------------------------------------------


async def test_settle_hold_writes_usage_row_charge_and_drops_hold(db: Database) -> None:
    key = await new_key(db, credit=10_000)
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r1", amount=5_000) is None

    await settle_hold(db, usage_row(key.id, "r1", cost=1_234))

    assert await open_holds(db) == {}
    assert [(u["request_id"], u["cost"], u["key"]) for u in await list_usage(db)] == [("r1", 1_234, "k")]
    charges = await rows(db, "SELECT kind, amount, request_id, created_at FROM ledger WHERE kind = 'charge'")
    assert charges == [("charge", -1_234, "r1", T0)]
    assert await balance(db) == await get_ledger_sum(db, key.account_id) == 10_000 - 1_234


async def test_settle_hold_zero_cost_writes_usage_row_without_charge(db: Database) -> None:
    key = await new_key(db, credit=10_000)
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r1", amount=5_000) is None

    await settle_hold(db, usage_row(key.id, "r1", cost=0))

    assert await open_holds(db) == {}
    assert len(await list_usage(db)) == 1
    assert await rows(db, "SELECT * FROM ledger WHERE kind = 'charge'") == []
    assert await balance(db) == 10_000


async def test_settle_hold_frees_the_held_money(db: Database) -> None:
    key = await new_key(db, credit=1_000)
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r1", amount=1_000) is None
    await settle_hold(db, usage_row(key.id, "r1", cost=600))
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r2", amount=400) is None
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r3", amount=1) == NO_MONEY


async def test_settle_hold_reused_id_raises_and_changes_nothing(db: Database) -> None:
    key = await new_key(db, credit=1_000)
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r1", amount=500) is None
    await settle_hold(db, usage_row(key.id, "r1", cost=100))
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r2", amount=500) is None

    with pytest.raises(DuplicateRequestId):
        await settle_hold(db, usage_row(key.id, "r1", cost=100))

    assert len(await list_usage(db)) == 1
    assert await balance(db) == await get_ledger_sum(db, key.account_id) == 900
    assert await open_holds(db) == {"r2": 500}


async def test_release_dead_holds_drops_the_holds_of_a_gone_process_and_keeps_balances(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "t.db", owner=GONE) as gone:
        a, b = await new_key(gone, "a", credit=1_000), await new_key(gone, "b", credit=2_000)
        for key, rid, amount in [(a, "r1", 400), (a, "r2", 600), (b, "r3", 2_000)]:
            assert (
                await reserve_hold(gone, key_id=key.id, account_id=key.account_id, request_id=rid, amount=amount)
                is None
            )
    async with await Database.open(tmp_path / "t.db") as db:
        assert await release_dead_holds(db) == 3

        assert await open_holds(db) == {}
        assert (await balance(db, "a"), await balance(db, "b")) == (1_000, 2_000)
        assert await reserve_hold(db, key_id=a.id, account_id=a.account_id, request_id="r4", amount=1_000) is None


async def test_release_dead_holds_keeps_the_holds_of_live_processes(tmp_path: Path) -> None:
    """A second server (or a sweeping worker) must not free money that a live worker is still spending."""
    async with (
        await Database.open(tmp_path / "t.db") as live,
        await Database.open(tmp_path / "t.db", owner=GONE) as gone,
    ):
        key = await new_key(live, "a", credit=1_000)
        assert await reserve_hold(live, key_id=key.id, account_id=key.account_id, request_id="live", amount=600) is None
        assert await reserve_hold(gone, key_id=key.id, account_id=key.account_id, request_id="gone", amount=400) is None

        assert await release_dead_holds(live) == 1
        assert await open_holds(live) == {"live": 600}
        assert (
            await reserve_hold(live, key_id=key.id, account_id=key.account_id, request_id="r3", amount=401) == NO_MONEY
        )


async def test_release_dead_holds_drops_holds_from_before_owners_were_recorded(db: Database) -> None:
    key = await new_key(db, "a", credit=1_000)
    assert await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="old", amount=500) is None
    await db.write(lambda conn: conn.execute("UPDATE holds SET owner = NULL"))  # as m004 leaves an old hold

    assert await release_dead_holds(db) == 1
    assert await open_holds(db) == {}


# --- keys ---------------------------------------------------------------------------------------------------------


async def test_insert_key_secret_never_stored(tmp_path: Path) -> None:
    def stored() -> bytes:  # the database file and its WAL/shm companions
        return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("own.db*")))

    async with await Database.open(tmp_path / "own.db") as db:
        _, secret = await insert_key_with_account(db, name="k", credit=1, models=("m",))
        assert hash_secret(secret).encode() in stored()  # the grep does see what was written
        assert secret[len("sk-tb-") :].encode() not in stored()
    assert hash_secret(secret).encode() in stored()  # closed: the WAL is checkpointed into own.db
    assert secret[len("sk-tb-") :].encode() not in stored()


async def test_insert_key_secret_format(db: Database) -> None:
    _, secret = await insert_key_with_account(db, name="k")
    assert secret.startswith("sk-tb-")
    assert len(secret) == len("sk-tb-") + 40
    assert set(secret[len("sk-tb-") :]) <= set(string.ascii_letters + string.digits)


async def test_insert_key_prefix_is_first_twelve_chars(db: Database) -> None:
    record, secret = await insert_key_with_account(db, name="k")
    assert DISPLAY_PREFIX_CHARS == 12
    assert record.prefix == secret[:12]
    assert (await rows(db, "SELECT prefix FROM api_keys")) == [(secret[:12],)]


async def test_get_key_by_hash_finds_key_by_its_secret_only(db: Database) -> None:
    record, secret = await insert_key_with_account(db, name="k")
    assert await get_key_by_hash(db, hash_secret(secret)) == record
    assert await get_key_by_hash(db, hash_secret(secret + "x")) is None


async def test_insert_key_duplicate_name_raises_key_exists(db: Database) -> None:
    await new_key(db, credit=100)
    with pytest.raises(KeyExists):
        await new_key(db, credit=100)
    assert await count_keys(db) == 1
    assert await rows(db, "SELECT amount FROM ledger") == [(100,)]


async def test_revoke_key_sets_status(db: Database) -> None:
    key = await new_key(db)
    assert key.status == "active" and key.usable_at(T0)
    await revoke_key(db, key.public_id)
    revoked = await get_key_by_name(db, "k")
    assert revoked is not None
    assert revoked.status == "revoked"
    assert not revoked.usable_at(T0)


async def test_revoke_key_unknown_id_raises(db: Database) -> None:
    with pytest.raises(KeyNotFound):
        await revoke_key(db, "key_nobody")


async def test_insert_key_allowlist_round_trips(db: Database) -> None:
    key = await new_key(db, models=("gpt-4o", "echo-1", "gpt-4o-mini"))
    assert key.models == frozenset({"gpt-4o", "echo-1", "gpt-4o-mini"})
    assert key.allows("echo-1")
    assert not key.allows("gpt-4")
    assert (await get_key_by_hash(db, (await rows(db, "SELECT key_hash FROM api_keys"))[0][0])) == key


async def test_insert_key_empty_allowlist_allows_every_model(db: Database) -> None:
    key = await new_key(db)
    assert key.models == frozenset()
    assert key.allows("anything")


async def test_insert_key_fields_round_trip(db: Database) -> None:
    key = await new_key(db, credit=7, group="gold", expires_at=T0 + 60, rpm=10, tpm=1_000)
    assert (key.name, key.group, key.balance, key.expires_at, key.rpm, key.tpm) == ("k", "gold", 7, T0 + 60, 10, 1_000)
    assert key.usable_at(T0 + 59.9)
    assert not key.usable_at(T0 + 60)


async def test_list_keys_in_creation_order(db: Database) -> None:
    for name in ["b", "a", "c"]:
        await new_key(db, name)
    assert [k.name for k in await list_keys(db)] == ["b", "a", "c"]
    assert await count_keys(db) == 3


# --- usage --------------------------------------------------------------------------------------------------------


async def test_list_usage_oldest_first_with_filters(db: Database) -> None:
    a, b = await new_key(db, "a", credit=1_000), await new_key(db, "b", credit=1_000)
    await settled(db, a, "r1", 10, model="x", created_at=T0)
    await settled(db, b, "r2", 20, model="y", created_at=T0 + 10)
    await settled(db, a, "r3", 30, model="y", created_at=T0 + 20)

    assert [u["request_id"] for u in await list_usage(db)] == ["r1", "r2", "r3"]
    assert [u["request_id"] for u in await list_usage(db, key="a")] == ["r1", "r3"]
    assert [u["request_id"] for u in await list_usage(db, model="y")] == ["r2", "r3"]
    assert [u["request_id"] for u in await list_usage(db, since=T0 + 10)] == ["r2", "r3"]
    assert [u["request_id"] for u in await list_usage(db, key="a", model="y", since=T0)] == ["r3"]
    [row] = await list_usage(db, key="b")
    expected = asdict(usage_row(b.id, "r2", 20, model="y", created_at=T0 + 10))
    assert row == {**expected, "stream": 0, "key": "b", "account_id": b.account_id}


async def test_sum_usage_groups_by_model_key_and_day(db: Database) -> None:
    a, b = await new_key(db, "a", credit=1_000), await new_key(db, "b", credit=1_000)
    await settled(db, a, "r1", 10, model="x", created_at=T0)
    await settled(db, b, "r2", 20, model="y", created_at=T0 + 86_400)
    await settled(db, a, "r3", 30, model="y", created_at=T0 + 86_400)

    by_model = await sum_usage(db, by="model")
    assert [(s["model"], s["requests"], s["cost"], s["prompt_tokens"]) for s in by_model] == [
        ("x", 1, 10, 10),
        ("y", 2, 50, 20),
    ]
    assert [(s["key"], s["cost"]) for s in await sum_usage(db, by="key")] == [("a", 40), ("b", 20)]
    assert [(s["day"], s["requests"]) for s in await sum_usage(db, by="day")] == [
        ("2025-06-15", 1),
        ("2025-06-16", 2),
    ]


# --- interleavings ------------------------------------------------------------------------------------------------

KEYS = ("a", "b")
_KEY = st.integers(0, len(KEYS) - 1)
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("credit"), _KEY, st.integers(-2_000, 5_000)),
        st.tuples(st.just("reserve"), _KEY, st.integers(0, 3_000)),
        st.tuples(st.just("reserve_many"), _KEY, st.lists(st.integers(0, 2_000), min_size=2, max_size=5)),
        st.tuples(st.just("settle"), st.integers(0, 20), st.fractions(0, 1)),
        st.tuples(st.just("restart")),
    ),
    max_size=25,
)


@dataclass
class _Model:
    balance: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KEYS, 0))
    holds: dict[str, tuple[str, int]] = field(default_factory=dict)  # request id -> (key name, amount)
    next_id: int = 0

    def available(self, name: str) -> int:
        return self.balance[name] - sum(amount for key, amount in self.holds.values() if key == name)

    def request_id(self) -> str:
        self.next_id += 1
        return f"r{self.next_id}"


async def _run_interleaving(path: Path, ops: list[tuple[Any, ...]]) -> None:
    db = await Database.open(path, owner=GONE)  # each run "crashes" at its restart, so its holds are a dead one's
    try:
        made = {name: await new_key(db, name) for name in KEYS}
        ids = {name: key.id for name, key in made.items()}
        model = _Model()
        for op in ops:
            if op[0] == "credit":
                name, amount = KEYS[op[1]], op[2]
                assert await insert_credit(db, name, amount) == model.balance[name] + amount
                model.balance[name] += amount
            elif op[0] in ("reserve", "reserve_many"):
                name = KEYS[op[1]]
                amounts = [op[2]] if op[0] == "reserve" else op[2]
                rids = [model.request_id() for _ in amounts]
                before = model.available(name)
                results = await asyncio.gather(
                    *(
                        reserve_hold(db, key_id=ids[name], account_id=made[name].account_id, request_id=r, amount=a)
                        for r, a in zip(rids, amounts)
                    )
                )
                assert set(results) <= {None, NO_MONEY}
                granted = sum(a for a, refusal in zip(amounts, results) if refusal is None)
                assert granted <= max(before, 0)  # never more than was free, in whatever order they ran
                assert all(
                    a > before - granted for a, refusal in zip(amounts, results) if refusal
                )  # none refused that fit
                if op[0] == "reserve":
                    assert results == [None if amounts[0] <= before else NO_MONEY]
                model.holds.update({r: (name, a) for r, a, refusal in zip(rids, amounts, results) if refusal is None})
            elif op[0] == "settle" and model.holds:
                rid = sorted(model.holds)[op[1] % len(model.holds)]
                name, amount = model.holds.pop(rid)
                charged = int(amount * op[2])  # never above the hold, as quota guarantees
                await settle_hold(db, usage_row(ids[name], rid, charged))
                model.balance[name] -= charged
                assert rid not in await open_holds(db)
            elif op[0] == "restart":  # a crash: the process goes away mid-requests, the next one starts clean
                await db.close()
                db = await Database.open(path, owner=GONE)
                assert await release_dead_holds(db) == len(model.holds)
                model.holds.clear()
            for name, key in made.items():
                assert await balance(db, name) == await get_ledger_sum(db, key.account_id) == model.balance[name]
            assert await open_holds(db) == {rid: amount for rid, (_, amount) in model.holds.items()}
            orphans = await rows(
                db,
                "SELECT l.request_id, COUNT(u.request_id) FROM ledger l LEFT JOIN usage_events u"
                " ON u.request_id = l.request_id WHERE l.kind = 'charge' GROUP BY l.id HAVING COUNT(u.request_id) != 1",
            )
            assert orphans == []  # each charge pays for exactly one usage row
    finally:
        await db.close()


@settings(max_examples=60, deadline=None)
@given(_OPS)
def test_ledger_balance_equals_ledger_sum_for_any_interleaving(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[Any, ...]]
) -> None:
    asyncio.run(_run_interleaving(tmp_path_factory.mktemp("interleaving") / "t.db", ops))


async def test_sums_answer_over_rows_stored_before_usage_was_bounded(db: Database) -> None:
    # Rows of 9e18 tokens each, as a database written before usage_from bounded counts holds them:
    # SQLite's SUM() of two of them overflows. Each row counts at most 10**9 of each kind.
    key = await new_key(db, "k")
    huge = replace(usage_row(key.id, "r1", 0), prompt_tokens=9 * 10**18, completion_tokens=9 * 10**18)
    await settle_hold(db, huge)
    await settle_hold(db, replace(huge, request_id="r2"))
    await settle_hold(db, usage_row(key.id, "r3", 7))
    for by in ("model", "key", "channel", "day"):
        (total,) = await sum_usage(db, by=by)
        assert total["prompt_tokens"] == 2 * 10**9 + 10 and total["completion_tokens"] == 2 * 10**9 + 5
        assert total["requests"] == 3 and total["cost"] == 7
    (bucket,) = await sum_usage_series(db, bucket_s=86400, by="model", since=0)
    assert bucket["prompt_tokens"] == 2 * 10**9 + 10 and bucket["cost"] == 7
