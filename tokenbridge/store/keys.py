"""API keys: made here, stored as SHA-256 only, looked up by hash."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import string
import time
from dataclasses import dataclass

import aiosqlite
import orjson

from tokenbridge.money import MAX_NANO, format_usd
from tokenbridge.store.db import Database

KEY_PREFIX = "sk-tb-"
KEY_RANDOM_CHARS = 40
DISPLAY_PREFIX_CHARS = len(KEY_PREFIX) + 6  # "sk-tb-AbC123": enough to tell keys apart, useless to an attacker
_BASE62 = string.ascii_letters + string.digits


class KeyExists(Exception):
    """A key with that name already exists."""


class KeyNotFound(Exception):
    """No key has that name."""


class BalanceOutOfRange(Exception):
    """The change would take a balance past ±MAX_NANO (a SQLite INTEGER); nothing was written."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as the gateway sees it; never holds the secret."""

    id: int
    name: str
    prefix: str
    group: str
    balance: int  # nano-USD
    models: frozenset[str]  # allowlist; empty = every model
    expires_at: float | None
    rpm: int | None
    tpm: int | None
    status: str
    created_at: float

    def usable_at(self, now: float) -> bool:
        return self.status == "active" and (self.expires_at is None or now < self.expires_at)

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models


def new_secret() -> str:
    """`sk-tb-` + 40 base62 characters from the OS CSPRNG (~238 bits)."""
    return KEY_PREFIX + "".join(secrets.choice(_BASE62) for _ in range(KEY_RANDOM_CHARS))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


_SELECT = """
    SELECT k.id, k.name, k.prefix, k.group_name, k.balance, k.expires_at, k.rpm, k.tpm, k.status, k.created_at,
           (SELECT json_group_array(model) FROM api_key_models WHERE key_id = k.id) AS models
    FROM api_keys k
"""


def _record(row: aiosqlite.Row) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        group=row["group_name"],
        balance=row["balance"],
        models=frozenset(orjson.loads(row["models"])),
        expires_at=row["expires_at"],
        rpm=row["rpm"],
        tpm=row["tpm"],
        status=row["status"],
        created_at=row["created_at"],
    )


async def insert_key(
    db: Database,
    *,
    name: str,
    credit: int = 0,
    group: str = "default",
    models: tuple[str, ...] = (),
    expires_at: float | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
) -> tuple[KeyRecord, str]:
    """Create a key (and its opening credit as a ledger row); returns the record and the secret, shown once."""
    if not -MAX_NANO <= credit <= MAX_NANO:
        raise BalanceOutOfRange(
            f"an opening credit of {format_usd(credit)} USD is outside ±{format_usd(MAX_NANO)} USD,"
            " the most a balance holds"
        )
    secret = new_secret()
    now = time.time()

    def change(conn: sqlite3.Connection) -> None:
        cur = conn.execute(
            "INSERT INTO api_keys (name, key_hash, prefix, group_name, balance, expires_at, rpm, tpm, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, hash_secret(secret), secret[:DISPLAY_PREFIX_CHARS], group, credit, expires_at, rpm, tpm, now),
        )
        key_id = cur.lastrowid
        conn.executemany("INSERT INTO api_key_models (key_id, model) VALUES (?, ?)", [(key_id, m) for m in models])
        if credit:
            conn.execute(
                "INSERT INTO ledger (key_id, kind, amount, note, created_at) VALUES (?, 'credit', ?, ?, ?)",
                (key_id, credit, "opening credit", now),
            )

    try:
        await db.write(change)
    except sqlite3.IntegrityError as exc:
        raise KeyExists(f"a key named {name!r} already exists") from exc
    record = await get_key_by_name(db, name)
    assert record is not None
    return record, secret


async def get_key_by_hash(db: Database, key_hash: str) -> KeyRecord | None:
    async with db.reader.execute(_SELECT + " WHERE k.key_hash = ?", (key_hash,)) as cur:
        row = await cur.fetchone()
    return None if row is None else _record(row)


async def get_keys_version(db: Database) -> int:
    """Moves whenever a key is created, revoked or edited (not when a balance changes)."""
    async with db.reader.execute("SELECT version FROM key_changes WHERE id = 1") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


class KeyCache:
    """Keys by hash, kept in memory while `get_keys_version` stays put (auth then costs a dict lookup).

    Balances in cached records go stale at once and are never read from here: holds and charges
    read the database. Unknown hashes are not cached, so guessing keys cannot fill it.
    """

    MAX_KEYS = 10_000

    def __init__(self) -> None:
        self.version = -1
        self._keys: dict[str, KeyRecord] = {}

    def get(self, key_hash: str) -> KeyRecord | None:
        return self._keys.get(key_hash)

    def put(self, key_hash: str, record: KeyRecord, *, seen_at: int) -> None:
        """Keep a record read while the cache was at version `seen_at`; a read that raced a change is dropped."""
        if seen_at != self.version:
            return
        if len(self._keys) >= self.MAX_KEYS:
            self._keys.clear()
        self._keys[key_hash] = record

    def observe(self, version: int) -> None:
        """The version now in the database: a move drops every cached key."""
        if version != self.version:
            self._keys.clear()
            self.version = version


async def get_key_by_name(db: Database, name: str) -> KeyRecord | None:
    async with db.reader.execute(_SELECT + " WHERE k.name = ?", (name,)) as cur:
        row = await cur.fetchone()
    return None if row is None else _record(row)


async def list_keys(db: Database) -> list[KeyRecord]:
    async with db.reader.execute(_SELECT + " ORDER BY k.id") as cur:
        return [_record(row) for row in await cur.fetchall()]


async def count_keys(db: Database) -> int:
    async with db.reader.execute("SELECT COUNT(*) FROM api_keys") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def update_key_revoked(db: Database, name: str) -> None:
    """Revoke by name; the next request with the key is refused (auth reads the row per request)."""

    def change(conn: sqlite3.Connection) -> None:
        if conn.execute("UPDATE api_keys SET status = 'revoked' WHERE name = ?", (name,)).rowcount == 0:
            raise KeyNotFound(f"no key named {name!r}")

    await db.write(change)


_EDITABLE = frozenset({"group_name", "expires_at", "rpm", "tpm"})


async def update_key_limits(
    db: Database, name: str, *, columns: dict[str, object], models: tuple[str, ...] | None = None
) -> None:
    """Edit what auth and admission read about a key (group, expiry, rate limits; `models` replaces the
    allowlist). Each of these moves the m003 `key_changes` version, so every process drops its cached copy."""
    unknown = set(columns) - _EDITABLE
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")

    def change(conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT id FROM api_keys WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise KeyNotFound(f"no key named {name!r}")
        if columns:
            assignments = ", ".join(f"{column} = ?" for column in columns)
            conn.execute(f"UPDATE api_keys SET {assignments} WHERE id = ?", (*columns.values(), row[0]))
        if models is not None:
            conn.execute("DELETE FROM api_key_models WHERE key_id = ?", (row[0],))
            conn.executemany("INSERT INTO api_key_models (key_id, model) VALUES (?, ?)", [(row[0], m) for m in models])

    await db.write(change)
