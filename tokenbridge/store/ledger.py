"""Money moves: credits, holds, and settling a hold into a charge plus its usage row.

Every balance change is a ledger row written in the same transaction as the balance update, so
`accounts.balance == SUM(ledger.amount)` of the account holds after every commit.
"""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import dataclass, field

from tokenbridge.periods import period_start
from tokenbridge.process import is_alive
from tokenbridge.store.accounts import AccountNotFound, credit_account, spending
from tokenbridge.store.db import Database
from tokenbridge.store.keys import KeyNotFound
from tokenbridge.store.usage import UsageRow, insert_usage


class DuplicateRequestId(Exception):
    """A hold or usage row with this request id exists already."""


async def insert_credit(db: Database, account_name: str, amount: int, *, note: str | None = None) -> int:
    """Top up (amount > 0) or correct (amount < 0) an account's wallet; returns the new balance.

    The new balance must stay within ±MAX_NANO (a SQLite INTEGER: past it SQLite would store a REAL):
    a credit that would break it changes nothing and raises BalanceOutOfRange; otherwise the update
    and its ledger row commit together (accounts.credit_account).
    """

    def change(conn: sqlite3.Connection) -> int:
        found = conn.execute("SELECT id FROM accounts WHERE name = ?", (account_name,)).fetchone()
        if found is None:
            raise AccountNotFound(f"no account named {account_name!r}")
        return credit_account(conn, int(found[0]), amount, note=note)

    return await db.write(change)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a hold was not taken: `wallet` (the account's balance − its holds is too little), `key_limit`
    (the key's spend limit − spent in its period − its holds is), `rpm` or `tpm` (then retry after
    some seconds). `available`: what was left, nano-USD, for the first two."""

    reason: str
    retry_after_s: int = 0
    available: int = field(default=0, compare=False)  # a detail for the message, not part of the verdict


RATE_WINDOW_S = 60.0

# Everything admission needs, in one read inside the write transaction. The rate and spend-limit
# subqueries only run for keys that have such limits (SQLite evaluates CASE branches lazily).
# The money columns (chunks.draw_chunk reads them too): the wallet, every hold of the account, the
# key's spend limit and what its period's charges and its holds use of it.
MONEY_COLUMNS = """a.balance,
       (SELECT COALESCE(SUM(amount), 0) FROM holds WHERE account_id = a.id) AS account_held,
       k.spend_limit,
       CASE WHEN k.spend_limit IS NULL THEN 0 ELSE
         (SELECT COALESCE(-SUM(amount), 0) FROM ledger WHERE key_id = k.id AND kind = 'charge'
          AND created_at >= CASE k.spend_period WHEN 'day' THEN :day WHEN 'month' THEN :month ELSE 0 END)
         + (SELECT COALESCE(SUM(amount), 0) FROM holds WHERE key_id = k.id) END AS key_used"""
_ADMISSION = f"""
SELECT {MONEY_COLUMNS},
       k.rpm, k.tpm,
       CASE WHEN k.rpm IS NULL THEN 0 ELSE
         (SELECT COUNT(*) FROM usage_events WHERE key_id = k.id AND created_at > :since)
         + (SELECT COUNT(*) FROM holds WHERE key_id = k.id) END AS recent_requests,
       CASE WHEN k.tpm IS NULL THEN 0 ELSE
         (SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_events
          WHERE key_id = k.id AND created_at > :since) END AS recent_tokens,
       CASE WHEN k.rpm IS NULL AND k.tpm IS NULL THEN NULL ELSE
         MIN(COALESCE((SELECT MIN(created_at) FROM usage_events WHERE key_id = k.id AND created_at > :since), :now),
             COALESCE((SELECT MIN(created_at) FROM holds WHERE key_id = k.id), :now)) END AS oldest,
       EXISTS (SELECT 1 FROM usage_events WHERE request_id = :request_id) AS used
FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = :key_id AND k.account_id = :account_id
"""


def money_refusal(wallet: int, limit: int | None, amount: int) -> Refusal | None:
    """`amount` against what the wallet has free and what the key's limit has left (None: no limit)."""
    if wallet < amount:
        return Refusal("wallet", available=max(0, wallet))
    if limit is not None and limit < amount:
        return Refusal("key_limit", available=max(0, limit))
    return None


async def reserve_hold(
    db: Database, *, key_id: int, account_id: int, request_id: str, amount: int, now: float | None = None
) -> Refusal | None:
    """Hold `amount` for a request, or say why not (None: held).

    Admitted only if the key's rate limits (requests and tokens in the last minute, requests in
    flight counting as requests) leave room, the account's wallet (balance − every hold of the
    account, whichever key took it) covers `amount`, and so does the key's spend limit (limit −
    charged in its period, from periods.period_start − the key's open holds). The check and the
    insert run inside one BEGIN IMMEDIATE transaction, which holds SQLite's write lock across
    processes: concurrent requests of any key or worker cannot both fit into the same money or the
    same minute. `now` (default: the clock) is injectable for the period tests.
    """

    def change(conn: sqlite3.Connection) -> Refusal | None:
        at = time.time() if now is None else now
        params = {
            "key_id": key_id, "account_id": account_id, "request_id": request_id, "since": at - RATE_WINDOW_S,
            "now": at, "day": period_start("day", at), "month": period_start("month", at),
        }  # fmt: skip
        row = conn.execute(_ADMISSION, params).fetchone()
        if row is None:
            raise KeyNotFound(f"no key with id {key_id} in account {account_id}")
        if row["used"]:
            raise DuplicateRequestId(request_id)
        retry = max(1, math.ceil((row["oldest"] or at) + RATE_WINDOW_S - at))
        if row["rpm"] is not None and row["recent_requests"] >= row["rpm"]:
            return Refusal("rpm", retry)
        if row["tpm"] is not None and row["recent_tokens"] >= row["tpm"]:
            return Refusal("tpm", retry)
        limit = None if row["spend_limit"] is None else row["spend_limit"] - row["key_used"]
        refusal = money_refusal(row["balance"] - row["account_held"], limit, amount)
        if refusal is not None:
            return refusal
        try:
            conn.execute(
                "INSERT INTO holds (request_id, key_id, account_id, amount, created_at, owner) VALUES (?, ?, ?, ?, ?, ?)",
                (request_id, key_id, account_id, amount, at, db.owner),
            )
        except sqlite3.IntegrityError as exc:  # the same id in flight twice
            raise DuplicateRequestId(request_id) from exc
        return None

    return await db.write(change)


async def settle_hold(db: Database, row: UsageRow) -> None:
    """Release the request's hold, write its usage row and charge its cost to the key's account (a
    ledger row naming the account and the key): one transaction."""
    if row.cost < 0:  # a "charge" that raises a balance is a bug upstream of here: refuse, never book it
        raise ValueError(f"request {row.request_id}: negative cost {row.cost}")

    def change(conn: sqlite3.Connection) -> None:
        found = conn.execute("SELECT account_id FROM api_keys WHERE id = ?", (row.key_id,)).fetchone()
        if found is None:
            raise KeyNotFound(f"no key with id {row.key_id}")
        account_id = int(found[0])
        conn.execute("DELETE FROM holds WHERE request_id = ?", (row.request_id,))
        insert_usage(conn, row, account_id)
        if row.cost:
            conn.execute(
                "INSERT INTO ledger (account_id, key_id, kind, amount, request_id, created_at)"
                " VALUES (?, ?, 'charge', ?, ?, ?)",
                (account_id, row.key_id, -row.cost, row.request_id, row.created_at),
            )
            conn.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (row.cost, account_id))

    try:
        await db.write(change)
    except sqlite3.IntegrityError as exc:
        raise DuplicateRequestId(row.request_id) from exc


async def release_dead_holds(db: Database) -> int:
    """Release the holds whose owner is gone (killed, crashed): its requests can never settle them.

    A hold of a live process stays, whatever that process is (a worker whose supervisor died, the
    worker next door): releasing it would let its key spend the same money twice. Holds without an
    owner predate m004 and so an earlier run. Liveness is read in the writer thread, inside the
    transaction: a process that is dead stays dead, and new holds name a live owner.
    """

    def change(conn: sqlite3.Connection) -> int:
        owners = [row[0] for row in conn.execute("SELECT DISTINCT owner FROM holds")]
        dead = [(owner,) for owner in owners if owner is None or not is_alive(owner)]
        return conn.executemany("DELETE FROM holds WHERE owner IS ?", dead).rowcount if dead else 0

    return await db.write(change)


async def count_holds(db: Database) -> int:
    async with db.reader.execute("SELECT COUNT(*) FROM holds") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def sum_holds(db: Database) -> int:
    """nano-USD every open hold blocks, chunks (store/chunks.py) and requests' own."""
    async with db.reader.execute("SELECT COALESCE(SUM(amount), 0) FROM holds") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def get_ledger_sum(db: Database, account_id: int) -> int:
    """SUM(ledger.amount) of the account: always its balance."""
    sql = "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE account_id = ?"
    async with db.reader.execute(sql, (account_id,)) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def get_key_spending(db: Database, key_id: int) -> tuple[int, int]:
    """(spent, held): the sum of the key's own charges and of its open holds, both nano-USD and >= 0."""
    return await spending(db, "key_id", key_id)
