"""Money moves: credits, holds, and settling a hold into a charge plus its usage row.

Every balance change is a ledger row written in the same transaction as the balance update, so
`api_keys.balance == SUM(ledger.amount)` holds after every commit.
"""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import dataclass

from tokenbridge.money import MAX_NANO, format_usd
from tokenbridge.process import is_alive
from tokenbridge.store.db import Database
from tokenbridge.store.keys import BalanceOutOfRange, KeyNotFound
from tokenbridge.store.usage import UsageRow, insert_usage


class DuplicateRequestId(Exception):
    """A hold or usage row with this request id exists already."""


async def insert_credit(db: Database, name: str, amount: int, *, note: str | None = None) -> int:
    """Top up (amount > 0) or correct (amount < 0) a key; returns the new balance.

    The new balance must stay within ±MAX_NANO (a SQLite INTEGER: past it SQLite would store a REAL).
    The bound is part of the one conditional UPDATE, so a credit that would break it changes nothing
    and raises BalanceOutOfRange; otherwise the update and its ledger row commit together.
    """
    kind = "credit" if amount >= 0 else "correction"

    def change(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "UPDATE api_keys SET balance = balance + :amount"
            " WHERE name = :name AND balance + :amount BETWEEN -:most AND :most RETURNING id, balance",
            {"amount": amount, "name": name, "most": MAX_NANO},
        ).fetchone()
        if row is None:
            found = conn.execute("SELECT balance FROM api_keys WHERE name = ?", (name,)).fetchone()
            if found is None:
                raise KeyNotFound(f"no key named {name!r}")
            raise BalanceOutOfRange(
                f"key {name!r} holds {format_usd(found[0])} USD: adding {format_usd(amount)} USD would take its balance"
                f" outside ±{format_usd(MAX_NANO)} USD, the most a balance holds"
            )
        conn.execute(
            "INSERT INTO ledger (key_id, kind, amount, note, created_at) VALUES (?, ?, ?, ?, ?)",
            (row[0], kind, amount, note, time.time()),
        )
        return int(row[1])

    return await db.write(change)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a hold was not taken: `insufficient_quota`, `rpm` or `tpm` (then retry after some seconds)."""

    reason: str
    retry_after_s: int = 0


RATE_WINDOW_S = 60.0

# Everything admission needs, in one read inside the write transaction. The rate subqueries only run
# for keys that have limits (SQLite evaluates CASE branches lazily).
_ADMISSION = """
SELECT k.balance,
       (SELECT COALESCE(SUM(amount), 0) FROM holds WHERE key_id = k.id) AS held,
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
FROM api_keys k WHERE k.id = :key_id
"""


async def reserve_hold(db: Database, *, key_id: int, request_id: str, amount: int) -> Refusal | None:
    """Hold `amount` for a request, or say why not (None: held).

    Admitted only if the key's rate limits (requests and tokens in the last minute, requests in
    flight counting as requests) leave room and balance − open holds covers `amount`. The check
    and the insert run inside one BEGIN IMMEDIATE transaction, which holds SQLite's write lock
    across processes: concurrent requests cannot both fit into the same money or the same minute.
    """

    def change(conn: sqlite3.Connection) -> Refusal | None:
        now = time.time()
        params = {"key_id": key_id, "request_id": request_id, "since": now - RATE_WINDOW_S, "now": now}
        row = conn.execute(_ADMISSION, params).fetchone()
        if row is None:
            raise KeyNotFound(f"no key with id {key_id}")
        if row["used"]:
            raise DuplicateRequestId(request_id)
        retry = max(1, math.ceil((row["oldest"] or now) + RATE_WINDOW_S - now))
        if row["rpm"] is not None and row["recent_requests"] >= row["rpm"]:
            return Refusal("rpm", retry)
        if row["tpm"] is not None and row["recent_tokens"] >= row["tpm"]:
            return Refusal("tpm", retry)
        if row["balance"] - row["held"] < amount:
            return Refusal("insufficient_quota")
        try:
            conn.execute(
                "INSERT INTO holds (request_id, key_id, amount, created_at, owner) VALUES (?, ?, ?, ?, ?)",
                (request_id, key_id, amount, now, db.owner),
            )
        except sqlite3.IntegrityError as exc:  # the same id in flight twice
            raise DuplicateRequestId(request_id) from exc
        return None

    return await db.write(change)


async def settle_hold(db: Database, row: UsageRow) -> None:
    """Release the request's hold, write its usage row and charge its cost: one transaction."""
    if row.cost < 0:  # a "charge" that raises a balance is a bug upstream of here: refuse, never book it
        raise ValueError(f"request {row.request_id}: negative cost {row.cost}")

    def change(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM holds WHERE request_id = ?", (row.request_id,))
        insert_usage(conn, row)
        if row.cost:
            conn.execute(
                "INSERT INTO ledger (key_id, kind, amount, request_id, created_at) VALUES (?, 'charge', ?, ?, ?)",
                (row.key_id, -row.cost, row.request_id, row.created_at),
            )
            conn.execute("UPDATE api_keys SET balance = balance - ? WHERE id = ?", (row.cost, row.key_id))

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


async def get_ledger_sum(db: Database, key_id: int) -> int:
    async with db.reader.execute("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE key_id = ?", (key_id,)) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def get_key_spending(db: Database, key_id: int) -> tuple[int, int]:
    """(spent, held): the sum of the key's charges and of its open holds, both nano-USD and >= 0."""
    sql = (
        "SELECT (SELECT COALESCE(-SUM(amount), 0) FROM ledger WHERE key_id = :id AND kind = 'charge'),"
        " (SELECT COALESCE(SUM(amount), 0) FROM holds WHERE key_id = :id)"
    )
    async with db.reader.execute(sql, {"id": key_id}) as cur:
        row = await cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
