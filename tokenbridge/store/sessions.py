"""Sign-in sessions and failed sign-ins (SPEC §9), on the tables of migration m006.

A session token is 32 random bytes from the OS CSPRNG, sent as the `tb_session` cookie and stored
only as its SHA-256, like a key's secret: a copy of the database signs nobody in. Expired rows are
dropped as new sessions are made, so the table does not grow with sign-ins long gone.

`sign_in_failures` rows (one per failed sign-in or redeem, by name and address) are what the
throttle counts over its window; older rows are dropped as new ones are written.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time

from tokenbridge.store.db import Database

__all__ = [
    "SESSION_TOKEN_BYTES",
    "delete_session",
    "get_session_account_id",
    "hash_token",
    "insert_failure",
    "insert_session",
    "list_recent_failures",
]

SESSION_TOKEN_BYTES = 32
FAILURE_KEEP_S = 24 * 3600  # a failure older than this counts for no throttle window


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def insert_session(db: Database, account_id: int, *, lifetime_s: float, now: float | None = None) -> str:
    """A new session for the account; its token, the only time it exists outside the caller's cookie."""
    token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
    at = time.time() if now is None else now

    def change(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (at,))
        conn.execute(
            "INSERT INTO sessions (token_hash, account_id, created_at, expires_at, last_seen_at) VALUES (?, ?, ?, ?, ?)",
            (hash_token(token), account_id, at, at + lifetime_s, at),
        )

    await db.write(change)
    return token


async def get_session_account_id(db: Database, token: str, *, now: float | None = None) -> int | None:
    """The account a live session belongs to; None for an unknown, ended or expired token."""
    at = time.time() if now is None else now
    query = "SELECT account_id FROM sessions WHERE token_hash = ? AND expires_at > ?"
    async with db.reader.execute(query, (hash_token(token), at)) as cur:
        row = await cur.fetchone()
    return None if row is None else int(row[0])


async def delete_session(db: Database, token: str) -> None:
    """Sign out: the token signs nobody in from now on (a token that is no session: nothing to do)."""

    def change(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM sessions WHERE token_hash = ?", (hash_token(token),))

    await db.write(change)


async def insert_failure(db: Database, *, name: str, address: str, now: float | None = None) -> None:
    """One failed attempt for `name` (a login name, or "redeem:<account>") from `address`."""
    at = time.time() if now is None else now

    def change(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM sign_in_failures WHERE created_at < ?", (at - FAILURE_KEEP_S,))
        conn.execute("INSERT INTO sign_in_failures (name, address, created_at) VALUES (?, ?, ?)", (name, address, at))

    await db.write(change)


_FAILURE_COLUMNS = {"name": "name", "address": "address"}  # what a throttle counts by -> its column


async def list_recent_failures(db: Database, *, by: str, value: str, since: float, limit: int) -> list[float]:
    """The times of the newest (at most `limit`) failures since `since` for this name or address, newest first."""
    column = _FAILURE_COLUMNS[by]
    query = f"SELECT created_at FROM sign_in_failures WHERE {column} = ? AND created_at >= ? ORDER BY created_at DESC LIMIT ?"
    async with db.reader.execute(query, (value, since, limit)) as cur:
        return [float(row[0]) for row in await cur.fetchall()]
