"""Money decided in memory (purse.py) over chunks and the settle journal (store/chunks.py), against a
real SQLite file: a draw sizes a chunk from the database's truth, spare room only where money is
plentiful, two processes never overspend one wallet, settles share one transaction, and a batch
with a bad row writes the others."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.store.test_ledger import balance, new_key, open_holds, usage_row
from tokenbridge.purse import SPARE_REQUESTS, Purse
from tokenbridge.store.chunks import SPARE_FRACTION, chunk_id
from tokenbridge.store.db import Database
from tokenbridge.store.keys import update_key
from tokenbridge.store.ledger import DuplicateRequestId, Refusal, get_ledger_sum, insert_credit

HOLD = 1_000


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with await Database.open(tmp_path / "purse.db") as database:
        yield database


async def test_a_small_wallet_gets_no_spare_room_and_admits_exactly_its_worth(db: Database) -> None:
    key = await new_key(db, credit=5 * HOLD + HOLD - 1)
    purse = Purse(lambda: db)
    verdicts = [await purse.hold(key, HOLD) for _ in range(7)]
    assert verdicts[:5] == [None] * 5
    assert verdicts[5] == verdicts[6] == Refusal("wallet") and verdicts[5].available == HOLD - 1
    assert await open_holds(db) == {chunk_id(db.owner, key.id): 5 * HOLD}  # exactly what is in flight
    assert purse.in_flight(key.id) == 5 * HOLD


async def test_a_large_wallet_draws_spare_room_once_for_many_requests(db: Database) -> None:
    key = await new_key(db, credit=10**6 * HOLD)
    purse = Purse(lambda: db)
    before = db.transactions
    for _ in range(SPARE_REQUESTS + 1):
        assert await purse.hold(key, HOLD) is None
    assert db.transactions - before == 1  # one draw admitted them all
    assert await open_holds(db) == {chunk_id(db.owner, key.id): (SPARE_REQUESTS + 1) * HOLD}
    assert await purse.hold(key, HOLD) is None  # the next one draws again
    assert db.transactions - before == 2


async def test_spare_room_is_one_request_per_sixty_four_left_free(db: Database) -> None:
    key = await new_key(db, credit=(1 + 3 * SPARE_FRACTION) * HOLD)
    purse = Purse(lambda: db)
    assert await purse.hold(key, HOLD) is None
    assert await open_holds(db) == {chunk_id(db.owner, key.id): 4 * HOLD}  # the request and 3 spare


async def test_two_processes_share_one_wallet_without_overspending_or_false_refusals(db: Database) -> None:
    key = await new_key(db, credit=10 * HOLD)
    other_db = await Database.open(db.path, owner="another-process")
    try:
        mine, theirs = Purse(lambda: db), Purse(lambda: other_db)
        verdicts = await asyncio.gather(*(p.hold(key, HOLD) for _ in range(8) for p in (mine, theirs)))
        assert verdicts.count(None) == 10 and len(verdicts) - 10 == 6
        held = await open_holds(db)
        assert sum(held.values()) == 10 * HOLD and set(held) <= {
            chunk_id(o, key.id) for o in (db.owner, "another-process")
        }
    finally:
        await other_db.close()


async def test_a_key_limit_edit_resizes_the_chunk_before_more_is_admitted(db: Database) -> None:
    key = await new_key(db, credit=10**6 * HOLD, spend_limit=10**5 * HOLD, spend_period="day")
    purse = Purse(lambda: db)
    assert await purse.hold(key, HOLD) is None  # spare room drawn under the old limit
    edited = await update_key(db, key.public_id, columns={"spend_limit": 2 * HOLD, "spend_period": "day"})
    assert (edited.spend_limit, edited.spend_period) == (2 * HOLD, "day")
    assert await purse.hold(edited, HOLD) is None
    refused = await purse.hold(edited, HOLD)
    assert refused == Refusal("key_limit")
    assert await open_holds(db) == {chunk_id(db.owner, key.id): 2 * HOLD}  # shrunk to what is in flight


async def test_settles_share_one_transaction_and_leave_the_books_exact(db: Database) -> None:
    key = await new_key(db, credit=10 * HOLD)
    purse = Purse(lambda: db)
    for _ in range(5):
        assert await purse.hold(key, HOLD) is None
    before = db.transactions
    rows = [usage_row(key.id, f"r{i}", cost=100 + i) for i in range(5)]
    await asyncio.gather(*(purse.settle(row, key.account_id, HOLD) for row in rows))
    assert db.transactions - before <= 2  # the first settle's batch, and the four that waited for it
    assert purse.in_flight(key.id) == 0
    assert await open_holds(db) == {}  # an emptied chunk goes with its last settle
    assert await balance(db) == await get_ledger_sum(db, key.account_id) == 10 * HOLD - sum(r.cost for r in rows)


async def test_a_batch_with_a_duplicate_writes_the_others_and_the_duplicate_fails_alone(db: Database) -> None:
    key = await new_key(db, credit=10 * HOLD)
    purse = Purse(lambda: db)
    for _ in range(4):
        assert await purse.hold(key, HOLD) is None
    await purse.settle(usage_row(key.id, "r0", cost=10), key.account_id, HOLD)
    again = [usage_row(key.id, "r0", cost=10), usage_row(key.id, "r1", cost=20), usage_row(key.id, "r2", cost=30)]
    outcomes = await asyncio.gather(*(purse.settle(r, key.account_id, HOLD) for r in again), return_exceptions=True)
    assert isinstance(outcomes[0], DuplicateRequestId) and outcomes[1:] == [None, None]
    assert await balance(db) == await get_ledger_sum(db, key.account_id) == 10 * HOLD - 60


async def test_a_negative_cost_is_refused_and_books_nothing(db: Database) -> None:
    key = await new_key(db, credit=10 * HOLD)
    purse = Purse(lambda: db)
    assert await purse.hold(key, HOLD) is None
    with pytest.raises(ValueError, match="negative cost"):
        await purse.settle(replace(usage_row(key.id, "neg", cost=0), cost=-1), key.account_id, HOLD)
    assert purse.in_flight(key.id) == HOLD  # the hold stays
    assert await balance(db) == 10 * HOLD


async def test_idle_chunks_go_back_and_a_credit_counts_at_the_next_draw(db: Database) -> None:
    key = await new_key(db, credit=HOLD)
    purse = Purse(lambda: db)
    assert await purse.hold(key, HOLD) is None
    assert await purse.hold(key, HOLD) == Refusal("wallet")
    await purse.return_idle(idle_s=0)
    assert await open_holds(db) == {chunk_id(db.owner, key.id): HOLD}  # in flight: kept
    await insert_credit(db, key.account_name, HOLD)
    assert await purse.hold(key, HOLD) is None  # the CLI's credit, seen by the draw
    for request in ("a", "b"):
        await purse.settle(usage_row(key.id, request, cost=0), key.account_id, HOLD)
    await purse.return_idle(idle_s=0)
    assert await open_holds(db) == {}


# --- the review of issue 17's money path: each of these failed before its fix ---------------------------------------


async def test_a_duplicate_settle_retried_releases_its_hold_once(db: Database) -> None:
    key = await new_key(db, credit=10 * HOLD)
    purse = Purse(lambda: db)
    for _ in range(2):
        assert await purse.hold(key, HOLD) is None
    await purse.settle(usage_row(key.id, "r0", cost=10), key.account_id, HOLD)
    for _ in range(2):  # the settle, and settle_later's retry of it
        with pytest.raises(DuplicateRequestId):
            await purse.settle(usage_row(key.id, "r0", cost=10), key.account_id, HOLD)
    assert purse.in_flight(key.id) == 0
    await purse.return_idle(idle_s=0)
    assert await open_holds(db) == {}  # nothing in flight: the chunk went back
    assert await balance(db) == await get_ledger_sum(db, key.account_id) == 10 * HOLD - 10


async def test_a_draw_whose_caller_is_cancelled_still_counts_in_the_chunk(db: Database) -> None:
    key = await new_key(db, credit=10**4 * HOLD)
    purse = Purse(lambda: db)
    admission = asyncio.ensure_future(purse.hold(key, HOLD))
    while key.id not in purse._chunks or not purse._chunks[key.id].lock.locked():
        await asyncio.sleep(0)  # a yield, not a wait: until the draw is in the writer's queue
    admission.cancel()  # e.g. the server stopping
    await asyncio.gather(admission, return_exceptions=True)
    async with purse._chunks[key.id].lock:  # the draw lets the chunk go once it has landed
        assert purse.in_flight(key.id) == 0  # the cancelled request was not admitted
    await purse.return_idle(idle_s=0)
    assert await open_holds(db) == {}  # the drawn row went back: the chunk knew of it


async def test_an_idle_return_that_waited_for_a_lock_spares_the_request_admitted_meanwhile(db: Database) -> None:
    key = await new_key(db, credit=10**4 * HOLD)
    purse = Purse(lambda: db)
    assert await purse.hold(key, HOLD) is None
    await purse.settle(usage_row(key.id, "r0", cost=0), key.account_id, HOLD)  # idle, its spare room left
    chunk = purse._chunks[key.id]
    await chunk.lock.acquire()  # as a draw holds it
    queued = asyncio.ensure_future(purse.hold(key, HOLD))
    await asyncio.sleep(0)  # a yield, not a wait: the admission queues for the lock
    chunk.lock.release()  # unlocked, but promised to the queued admission
    await purse.return_idle(idle_s=0)  # waits its turn behind it
    assert await queued is None
    assert purse.in_flight(key.id) == HOLD
    assert list(await open_holds(db)) == [chunk_id(db.owner, key.id)]  # the row of a request in flight stays


async def test_an_idle_chunk_of_another_key_of_the_account_gives_way(db: Database) -> None:
    first = await new_key(db, name="first", account="shared", credit=100 * HOLD)
    second = await new_key(db, name="second", account="shared")
    purse = Purse(lambda: db)
    assert await purse.hold(first, HOLD) is None  # its chunk: the request and one spare
    await purse.settle(usage_row(first.id, "r0", cost=0), first.account_id, HOLD)
    assert await open_holds(db) == {chunk_id(db.owner, first.id): HOLD}  # idle spare, returned within a second
    assert await purse.hold(second, 100 * HOLD) is None  # the whole wallet is free: it is admitted
    assert await open_holds(db) == {chunk_id(db.owner, second.id): 100 * HOLD}
    assert await purse.hold(first, HOLD) == Refusal("wallet")


async def test_a_refused_draw_gives_its_spare_room_back_to_the_other_processes(db: Database) -> None:
    key = await new_key(db, credit=100 * HOLD)
    purse = Purse(lambda: db)
    assert await purse.hold(key, HOLD) is None  # its chunk: the request and one spare
    assert await purse.hold(key, 100 * HOLD) == Refusal("wallet")
    assert await open_holds(db) == {chunk_id(db.owner, key.id): HOLD}  # only what is in flight blocks the wallet


async def test_a_correction_from_outside_stops_admission_from_spare_room(db: Database) -> None:
    key = await new_key(db, credit=10**4 * HOLD)
    purse = Purse(lambda: db)
    await purse.notice_outside_changes(db)  # the runtime's watcher, before anything is served
    assert await purse.hold(key, HOLD) is None  # spare room drawn from a large wallet
    cli = await Database.open(db.path, owner="the-cli")
    try:  # the CLI takes all but the request in flight back: nothing is free any more
        await insert_credit(cli, key.account_name, -(10**4 - 1) * HOLD)
    finally:
        await cli.close()
    await purse.notice_outside_changes(db)
    assert await purse.hold(key, HOLD) == Refusal("wallet")  # not admitted from the stale spare room
    assert await open_holds(db) == {chunk_id(db.owner, key.id): HOLD}  # the spare went back with the refusal


async def test_a_cancelled_draw_keeps_its_chunk_locked_until_it_lands(db: Database) -> None:
    key = await new_key(db, credit=10**4 * HOLD)
    purse = Purse(lambda: db)
    assert await purse.hold(key, HOLD) is None
    await purse.settle(usage_row(key.id, "r0", cost=0), key.account_id, HOLD)  # idle, with spare room
    go = threading.Event()
    blocker = asyncio.ensure_future(db.write(lambda conn: go.wait(60)))  # the writer busy: the draw queues
    refused = asyncio.ensure_future(purse.hold(key, 10**6 * HOLD))  # draws, to be refused and give its spare back
    while not purse._chunks[key.id].lock.locked():
        await asyncio.sleep(0)  # a yield, not a wait: until the draw is in the writer's queue
    refused.cancel()
    await asyncio.gather(refused, return_exceptions=True)
    small = asyncio.ensure_future(purse.hold(key, HOLD))  # would fit the spare room the draw is giving back
    await asyncio.sleep(0)  # a yield: it runs up to the lock
    go.set()
    await blocker
    assert await small is None
    held = await open_holds(db)
    assert held.get(chunk_id(db.owner, key.id), 0) >= purse.in_flight(key.id) == HOLD  # its hold has a row


async def test_an_idle_return_cancelled_while_it_waits_for_a_lock_leaves_no_chunk_locked(db: Database) -> None:
    first, second = await new_key(db, name="first", credit=10**4 * HOLD), await new_key(db, name="second", credit=HOLD)
    purse = Purse(lambda: db)
    for key in (first, second):
        assert await purse.hold(key, HOLD) is None
        await purse.settle(usage_row(key.id, f"r-{key.name}", cost=0), key.account_id, HOLD)
    purse._chunks[second.id].amount = HOLD  # as if its row had spare room: the return wants it too
    late = purse._chunks[second.id].lock
    await late.acquire()  # as a draw holds it
    queued = asyncio.ensure_future(purse.hold(second, HOLD))
    await asyncio.sleep(0)  # a yield: the admission queues for the lock
    returning = asyncio.ensure_future(purse.return_idle(idle_s=0))  # runs before the admission wakes
    late.release()  # unlocked, but promised to the queued admission: the return waits behind it
    await asyncio.sleep(0)  # a yield: the return locked the first chunk and queued for the second's
    returning.cancel()  # e.g. the server stopping
    await asyncio.gather(returning, queued, return_exceptions=True)
    assert not purse._chunks[first.id].lock.locked()  # not left locked: its key can still draw
