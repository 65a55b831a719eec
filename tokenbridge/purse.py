"""Money decisions in memory, SQLite as the journal (SPEC §13).

The purse admits a request with no I/O when this process's chunk of the key (store/chunks.py: a
hold row that blocks its amount from every other process) has room for the request's hold beside
the holds of its requests in flight. Only when it has not does admission wait for one transaction,
`draw_chunk`, which sizes the chunk anew from the database's truth: the wallet's balance minus every
other hold, the key's limit minus its spend in the period (so a CLI credit, another worker's spend
or an edited limit count at once), plus spare room for many more requests where the money is
plentiful and none where it is not. Draws of one key run one at a time, and no request of the key
is admitted from memory while one runs. A draw the wallet refuses gives its own spare room back,
and this process's spare room in the account's other keys gives way before it refuses. Money taken
from an account from outside (a CLI or API correction) makes its chunks stale: the runtime's key
poll notices the ledger row (`notice_outside_changes`) and their next admission draws.

Settles are journalled (`Journal`): every settle that arrives while a batch is being written waits
for the next one, one transaction for all of them (five statements), committed before the answer's
last byte as before. A batch that fails is written again row by row, so a row that cannot be
written fails alone. A chunk with no request in flight for IDLE_RETURN_S is returned (its row
deleted); at a clean stop every such chunk is; after a crash the next start releases them with the
process's other holds (ledger.release_dead_holds).

Keys with RPM/TPM limits keep the exact per-request path (stages/quota.py): a minute's window of
requests counts rows, not money.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tokenbridge.store.chunks import (
    Settle,
    draw_chunk,
    journal_settles,
    outside_debits,
    return_chunks,
    trim_chunks,
)
from tokenbridge.store.db import Database
from tokenbridge.store.keys import KeyRecord
from tokenbridge.store.ledger import DuplicateRequestId, Refusal
from tokenbridge.store.usage import UsageRow

log = logging.getLogger("tokenbridge")

SPARE_REQUESTS = 256  # a draw takes room for this many more requests like the one that asked, where money allows
IDLE_RETURN_S = 1.0  # a chunk with no request in flight this long goes back to the wallet


@dataclass(slots=True)
class Chunk:
    """This process's chunk of one key: `amount` is its row's, as committed (never more: where the
    two may part, `amount` is the smaller and `stray` says a row may be left); `used` the holds of
    its requests whose settle has not landed yet."""

    account_id: int
    amount: int = 0
    used: int = 0
    limit: tuple[int | None, str | None] = (None, None)  # the key's spend limit when it was drawn
    last: float = 0.0  # time.monotonic() of its last admission
    outside: int = 0  # money taken from its account from outside (a correction), as noticed
    seen: int = 0  # how many of those its last draw had seen: fewer, and nothing is admitted from memory
    stray: bool = False  # the row may hold more than `amount` (a settle that may have landed unseen)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def fits(self, amount: int, limit: tuple[int | None, str | None]) -> bool:
        return self.seen == self.outside and self.limit == limit and self.used + amount <= self.amount

    def has_row(self) -> bool:
        return bool(self.amount) or self.stray


class Purse:
    def __init__(self, db: Callable[[], Database]) -> None:
        self.db = db  # the database the lifespan opened (there is none yet when the stages are built)
        self._chunks: dict[int, Chunk] = {}
        self._journal = Journal(db)
        self._db_unavailable = lambda: db().unavailable  # the last write failed for the database's own fault
        self._ledger_seen: int | None = None  # the last ledger id notice_outside_changes read
        self._duplicates: set[str] = set()  # requests whose hold a DuplicateRequestId released already

    async def hold(self, key: KeyRecord, amount: int) -> Refusal | None:
        """Hold `amount` for a request of `key` (None), or say why not."""
        chunk = self._chunks.get(key.id)
        if chunk is None:
            chunk = self._chunks[key.id] = Chunk(key.account_id)
        limit = (key.spend_limit, key.spend_period)
        # While the database refuses writes, every admission tries one (a draw): it answers 503 as the
        # hold row did before, rather than sending upstream work whose charge cannot be recorded.
        if not chunk.lock.locked() and chunk.fits(amount, limit) and not self._db_unavailable():
            chunk.used += amount
            chunk.last = time.monotonic()
            return None
        await chunk.lock.acquire()
        draw: asyncio.Future[Refusal | None] | None = None
        try:
            if not chunk.fits(amount, limit) or self._db_unavailable():  # else a draw it waited for made room
                # Shielded: a caller cancelled mid-draw must not leave a committed row the chunk never counted.
                draw = asyncio.ensure_future(self._draw(key, chunk, amount, limit))
                refusal = await asyncio.shield(draw)
                if refusal is not None:
                    return refusal
            chunk.used += amount
            chunk.last = time.monotonic()
            return None
        finally:
            if draw is not None and not draw.done():  # cancelled: nothing is admitted from memory before it lands
                draw.add_done_callback(lambda _: chunk.lock.release())
            else:
                chunk.lock.release()

    async def _draw(
        self, key: KeyRecord, chunk: Chunk, amount: int, limit: tuple[int | None, str | None]
    ) -> Refusal | None:
        """Size the chunk from the database's truth (under its lock). Refused by the wallet, this
        process's spare room in the account's other keys gives way and it draws once more."""
        refusal: Refusal | None = None
        for attempt in range(2):
            seen = chunk.outside
            grow, refusal = await draw_chunk(
                self.db(),
                key_id=key.id,
                account_id=key.account_id,
                used=chunk.used,
                amount=amount,
                spare=SPARE_REQUESTS,
            )
            chunk.amount += grow
            chunk.seen = seen
            if refusal is None:
                chunk.limit = limit
                return None
            if attempt or refusal.reason != "wallet" or not await self.give_way(chunk.account_id, but=key.id):
                break
        return refusal

    async def give_way(self, account_id: int, *, but: int | None = None) -> bool:
        """Trim the spare room of this process's chunks of the account (but the key `but`'s, drawing
        now); False if none had any. Before a wallet refusal, also on the per-request path (quota.py)."""
        others = {kid: c for kid, c in self._chunks.items() if kid != but and c.account_id == account_id}
        locked = await _lock_where(others, lambda c: c.amount > c.used)
        if not locked:
            return False
        try:
            await trim_chunks(self.db(), {kid: c.amount - c.used for kid, c in locked.items()})
            for chunk in locked.values():
                chunk.amount = chunk.used
        finally:
            _unlock(locked)
        return True

    def in_flight(self, key_id: int) -> int:
        """The holds of the key's requests that have not settled (nano-USD)."""
        chunk = self._chunks.get(key_id)
        return chunk.used if chunk else 0

    async def settle(self, row: UsageRow, account_id: int, hold: int) -> None:
        """Journal the request's usage row and charge; once committed its hold leaves the chunk and
        its cost the chunk's row. Raises what the journal raised (then the hold stays)."""
        try:
            await self._journal.add((row, account_id, hold))
        except DuplicateRequestId:  # an earlier try may have landed, its charge leaving the chunk's row then
            if row.request_id in self._duplicates:  # settle_later's retry of one released already
                self._duplicates.discard(row.request_id)
            else:
                self._duplicates.add(row.request_id)
                self._settled(row, hold)
                self._chunks[row.key_id].stray = True  # the row may still hold it: counted as gone here
            raise
        self._settled(row, hold)

    def _settled(self, row: UsageRow, hold: int) -> None:
        chunk = self._chunks[row.key_id]
        chunk.used -= hold
        chunk.amount -= hold
        if chunk.amount <= 0:  # the journal deleted its row, unless it held more than was counted here
            chunk.stray = chunk.stray or chunk.amount < 0
            chunk.amount = 0

    async def notice_outside_changes(self, db: Database) -> None:
        """Money taken from an account from outside (a CLI or API correction) makes its chunks stale:
        their next admission draws, sized from the new balance (runtime.py, every key poll)."""
        self._ledger_seen, accounts = await outside_debits(db, self._ledger_seen)
        if accounts:
            for chunk in self._chunks.values():
                if chunk.account_id in accounts:
                    chunk.outside += 1

    async def return_idle(self, *, idle_s: float = IDLE_RETURN_S) -> None:
        """Return every chunk with nothing in flight for `idle_s` (0: every such chunk, at a stop)."""
        now = time.monotonic()
        idle = await _lock_where(self._chunks, lambda c: c.has_row() and not c.used and now - c.last >= idle_s)
        if idle:  # shielded: a row deleted must be a chunk emptied, even if the caller is cancelled
            await asyncio.shield(self._return(idle))

    async def _return(self, idle: dict[int, Chunk]) -> None:
        try:
            await return_chunks(self.db(), list(idle))
            for chunk in idle.values():
                chunk.amount, chunk.stray = 0, False
        finally:
            _unlock(idle)

    async def return_while_idle(self) -> None:
        """For the life of the process (runtime.py)."""
        while True:
            await asyncio.sleep(IDLE_RETURN_S)
            try:
                await self.return_idle()
            except Exception:  # a locked or vanished database: the chunks stay, try again next round
                log.exception("could not return idle chunks")


async def _lock_where(chunks: dict[int, Chunk], wanted: Callable[[Chunk], bool]) -> dict[int, Chunk]:
    """Lock the chunks that are `wanted` and not locked; those that stopped being wanted while a
    lock was taken (it waited for a queued admission) are let go again."""
    locked: dict[int, Chunk] = {}
    try:
        for key_id, chunk in list(chunks.items()):
            if chunk.lock.locked() or not wanted(chunk):
                continue
            await chunk.lock.acquire()
            if wanted(chunk):
                locked[key_id] = chunk
            else:
                chunk.lock.release()
    except BaseException:  # cancelled while waiting for one: the others are not left locked for good
        _unlock(locked)
        raise
    return locked


def _unlock(chunks: dict[int, Chunk]) -> None:
    for chunk in chunks.values():
        chunk.lock.release()


class Journal:
    """Settles in batches: one is written at a time, and what arrives meanwhile forms the next."""

    def __init__(self, db: Callable[[], Database]) -> None:
        self.db = db
        self._queue: list[tuple[Settle, asyncio.Future[None]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def add(self, settle: Settle) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((settle, future))
        if self._writing is None:
            self._writing = asyncio.ensure_future(self._write_all())
        await future

    async def _write_all(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._write(batch)
        finally:
            self._writing = None

    async def _write(self, batch: list[tuple[Settle, asyncio.Future[None]]]) -> None:
        outcomes: list[BaseException | None]
        try:
            db = self.db()
            try:
                await journal_settles(db, [settle for settle, _ in batch])
                outcomes = [None] * len(batch)
            except Exception as exc:
                if len(batch) == 1:
                    raise
                log.warning("a batch of %d settles failed (%s); writing them one by one", len(batch), exc)
                one_by_one = [journal_settles(db, [settle]) for settle, _ in batch]
                outcomes = list(await asyncio.gather(*one_by_one, return_exceptions=True))
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            outcomes = [exc] * len(batch)
        for ((row, _, _), future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if outcome is None:
                future.set_result(None)
            elif isinstance(outcome, sqlite3.IntegrityError):
                future.set_exception(DuplicateRequestId(row.request_id))
            else:
                future.set_exception(outcome)
