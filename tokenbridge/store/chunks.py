"""Chunks and the settle journal (SPEC §13): SQLite as the journal of money decided in memory.

A process admits requests against **chunks**: one hold row per (process, key), `chunk:<owner>:<key
id>`, naming the key and its account, so every other process's admission (ledger.reserve_hold,
draw_chunk) counts it against the wallet and the key's spend limit like any hold. One transaction
(draw_chunk) buys room for many requests when the money is plentiful, and exactly the request's
worth when it is not, so no request is refused while its money is free. A settle shrinks its
chunk by the charge in the same transaction as the usage row, the ledger row and the balance, and
many settles share one transaction (journal_settles: five statements whatever their number). An
idle chunk is deleted (return_chunks); a killed process's chunks go with its other holds
(ledger.release_dead_holds).
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Sequence

from tokenbridge.periods import period_start
from tokenbridge.store.db import Database
from tokenbridge.store.keys import KeyNotFound
from tokenbridge.store.ledger import MONEY_COLUMNS, Refusal, money_refusal
from tokenbridge.store.usage import INSERT_USAGE, UsageRow, usage_params

CHUNK_PREFIX = "chunk:"
SPARE_FRACTION = 64  # spare room for one more request per this many requests' worth left free: small wallets get none

_ROOM = f"""
SELECT {MONEY_COLUMNS},
       COALESCE((SELECT amount FROM holds WHERE request_id = :chunk), 0) AS mine
FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = :key_id AND k.account_id = :account_id
"""


def chunk_id(owner: str, key_id: int) -> str:
    return f"{CHUNK_PREFIX}{owner}:{key_id}"


async def draw_chunk(
    db: Database, *, key_id: int, account_id: int, used: int, amount: int, spare: int
) -> tuple[int, Refusal | None]:
    """Grow this process's chunk of the key so that it covers `used` (its requests in flight) plus
    `amount`, plus spare room for up to `spare` more such requests where the wallet and the key's
    limit leave plenty: one per SPARE_FRACTION requests' worth left free, so a wallet or a limit of
    fewer than that many requests gets none (no other process is refused for this one's spare).
    Returns how much the chunk grew (it may shrink: an edited limit), and the Refusal if `amount`
    does not fit; then the chunk shrinks to `used`, so its spare blocks nobody else's request.
    One BEGIN IMMEDIATE transaction: atomic against every other process's admission."""
    chunk = chunk_id(db.owner, key_id)

    def change(conn: sqlite3.Connection) -> tuple[int, Refusal | None]:
        at = time.time()
        params = {"key_id": key_id, "account_id": account_id, "chunk": chunk,
                  "day": period_start("day", at), "month": period_start("month", at)}  # fmt: skip
        row = conn.execute(_ROOM, params).fetchone()
        if row is None:
            raise KeyNotFound(f"no key with id {key_id} in account {account_id}")
        mine = int(row["mine"])  # the rest of the room is what no other hold takes
        wallet = row["balance"] - row["account_held"] + mine
        limit = None if row["spend_limit"] is None else row["spend_limit"] - row["key_used"] + mine
        refusal = money_refusal(wallet - used, None if limit is None else limit - used, amount)
        if refusal is not None:
            grow = min(0, used - mine)  # its spare goes back: the money it blocked is not this key's to take
        else:
            free = min(wallet, limit if limit is not None else wallet) - used - amount
            grow = (
                used + amount + amount * min(spare, max(0, free // (amount * SPARE_FRACTION) if amount else 0)) - mine
            )
        if grow:
            conn.execute(
                "INSERT INTO holds (request_id, key_id, account_id, amount, created_at, owner) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (request_id) DO UPDATE SET amount = amount + excluded.amount",
                (chunk, key_id, account_id, grow, at, db.owner),
            )
            conn.execute("DELETE FROM holds WHERE request_id = ? AND amount <= 0", (chunk,))
        return grow, refusal

    return await db.write(change)


Settle = tuple[UsageRow, int, int]  # a usage row, its key's account id, the request's hold


def _journal(conn: sqlite3.Connection, owner: str, rows: Sequence[Settle]) -> None:
    """Usage rows, ledger rows, balances and chunks of many settles: five statements in all. Each
    hold leaves its chunk (what was not charged goes back to the wallet); a chunk left empty goes."""
    for row, _, _ in rows:
        if row.cost < 0:  # a "charge" that raises a balance is a bug upstream of here: refuse, never book it
            raise ValueError(f"request {row.request_id}: negative cost {row.cost}")
    conn.executemany(INSERT_USAGE, [usage_params(row, account) for row, account, _ in rows])
    charged = [(row, account) for row, account, _ in rows if row.cost]
    conn.executemany(
        "INSERT INTO ledger (account_id, key_id, kind, amount, request_id, created_at) VALUES (?, ?, 'charge', ?, ?, ?)",
        [(account, row.key_id, -row.cost, row.request_id, row.created_at) for row, account in charged],
    )
    by_account: dict[int, int] = defaultdict(int)
    by_chunk: dict[str, int] = defaultdict(int)
    for row, account in charged:
        by_account[account] += row.cost
    for row, _, hold in rows:
        by_chunk[chunk_id(owner, row.key_id)] += hold
    conn.executemany("UPDATE accounts SET balance = balance - ? WHERE id = ?", [(c, a) for a, c in by_account.items()])
    conn.executemany("UPDATE holds SET amount = amount - ? WHERE request_id = ?", [(c, h) for h, c in by_chunk.items()])
    conn.executemany("DELETE FROM holds WHERE request_id = ? AND amount <= 0", [(h,) for h in by_chunk])


async def journal_settles(db: Database, rows: Sequence[Settle]) -> None:
    """Write the settles of requests admitted against chunks, (usage row, account id, hold) each, in one
    transaction; a duplicate request id (or any other row that fails) fails the whole batch."""
    await db.write(lambda conn: _journal(conn, db.owner, rows))


async def return_chunks(db: Database, key_ids: Sequence[int]) -> None:
    """Delete this process's chunks of these keys (they have no request in flight)."""
    chunks = [(chunk_id(db.owner, key_id),) for key_id in key_ids]
    await db.write(lambda conn: conn.executemany("DELETE FROM holds WHERE request_id = ?", chunks))


async def trim_chunks(db: Database, spare: dict[int, int]) -> None:
    """Shrink this process's chunks of these keys by their spare room (nano-USD by key id): relative
    updates, so a settle that landed meanwhile still counts. A chunk left empty goes."""
    trims = [(amount, chunk_id(db.owner, key_id)) for key_id, amount in spare.items()]

    def change(conn: sqlite3.Connection) -> None:
        conn.executemany("UPDATE holds SET amount = amount - ? WHERE request_id = ?", trims)
        conn.executemany("DELETE FROM holds WHERE request_id = ? AND amount <= 0", [(c,) for _, c in trims])

    await db.write(change)


async def outside_debits(db: Database, since: int | None) -> tuple[int, set[int]]:
    """The ledger's last id, and the accounts that rows after `since` took money from other than by
    charges (a CLI or API correction): their chunks were sized from a balance that is gone. With
    `since` None only the last id (where to start). Reads only the rows since (a rowid range)."""
    async with db.reader.execute("SELECT COALESCE(MAX(id), 0) FROM ledger") as cur:
        found = await cur.fetchone()
    last = int(found[0]) if found else 0
    if since is None or last <= since:
        return last, set()
    sql = "SELECT DISTINCT account_id FROM ledger WHERE id > ? AND id <= ? AND amount < 0 AND kind <> 'charge'"
    async with db.reader.execute(sql, (since, last)) as cur:
        return last, {int(row[0]) for row in await cur.fetchall()}
