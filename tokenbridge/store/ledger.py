"""Money moves: credits, holds, and settling a hold into a charge plus its usage row.

Every balance change is a ledger row written in the same transaction as the balance update, so
`api_keys.balance == SUM(ledger.amount)` holds after every commit.
"""

from __future__ import annotations

import sqlite3
import time

from tokenbridge.store.db import Database
from tokenbridge.store.keys import KeyNotFound
from tokenbridge.store.usage import UsageRow, insert_usage


class DuplicateRequestId(Exception):
    """A hold or usage row with this request id exists already."""


async def insert_credit(db: Database, name: str, amount: int, *, note: str | None = None) -> int:
    """Top up (amount > 0) or correct (amount < 0) a key; returns the new balance."""
    kind = "credit" if amount >= 0 else "correction"
    async with db.write() as conn:
        async with conn.execute(
            "UPDATE api_keys SET balance = balance + ? WHERE name = ? RETURNING id, balance", (amount, name)
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            raise KeyNotFound(f"no key named {name!r}")
        await conn.execute(
            "INSERT INTO ledger (key_id, kind, amount, note, created_at) VALUES (?, ?, ?, ?, ?)",
            (row[0], kind, amount, note, time.time()),
        )
        return int(row[1])


async def reserve_hold(db: Database, *, key_id: int, request_id: str, amount: int) -> bool:
    """Hold `amount` for a request if balance − open holds covers it; one statement, so atomic.

    Returns False when it does not fit. Concurrent requests (in this or another process) cannot
    both fit into the same money: SQLite runs the check and the insert under one write lock.
    """
    try:
        async with db.write() as conn:
            async with conn.execute("SELECT 1 FROM usage_events WHERE request_id = ?", (request_id,)) as used:
                if await used.fetchone() is not None:
                    raise DuplicateRequestId(request_id)
            cur = await conn.execute(
                "INSERT INTO holds (request_id, key_id, amount, created_at)"
                " SELECT ?, id, ?, ? FROM api_keys WHERE id = ?"
                " AND balance - (SELECT COALESCE(SUM(amount), 0) FROM holds WHERE key_id = ?) >= ?",
                (request_id, amount, time.time(), key_id, key_id, amount),
            )
            return cur.rowcount == 1
    except sqlite3.IntegrityError as exc:
        raise DuplicateRequestId(request_id) from exc


async def settle_hold(db: Database, row: UsageRow) -> None:
    """Release the request's hold, write its usage row and charge its cost: one transaction."""
    try:
        async with db.write() as conn:
            await conn.execute("DELETE FROM holds WHERE request_id = ?", (row.request_id,))
            await insert_usage(conn, row)
            if row.cost:
                await conn.execute(
                    "INSERT INTO ledger (key_id, kind, amount, request_id, created_at) VALUES (?, 'charge', ?, ?, ?)",
                    (row.key_id, -row.cost, row.request_id, row.created_at),
                )
                await conn.execute("UPDATE api_keys SET balance = balance - ? WHERE id = ?", (row.cost, row.key_id))
    except sqlite3.IntegrityError as exc:
        raise DuplicateRequestId(row.request_id) from exc


async def release_all_holds(db: Database) -> int:
    """At start-up, before any worker serves: holds of requests a crash cut off are released."""
    async with db.write() as conn:
        cur = await conn.execute("DELETE FROM holds")
        return cur.rowcount


async def get_ledger_sum(db: Database, key_id: int) -> int:
    async with db.reader.execute("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE key_id = ?", (key_id,)) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0
