"""API keys: made here under an account, stored as SHA-256 only, looked up by hash."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import aiosqlite
import orjson

from tokenbridge import ids
from tokenbridge.store.accounts import AccountNotFound, check_credit, credit_account, insert_account_row
from tokenbridge.store.db import Database

KEY_PREFIX = "sk-tb-"
KEY_RANDOM_CHARS = 40
DISPLAY_PREFIX_CHARS = len(KEY_PREFIX) + 6  # "sk-tb-AbC123": enough to tell keys apart, useless to an attacker


class KeyExists(Exception):
    """The account has a key with that name already."""


class KeyNotFound(Exception):
    """No key has that name (or id)."""


class KeyNameAmbiguous(KeyNotFound):
    """Several accounts have a key of that name: the account must be named too."""


class KeyRevoked(Exception):
    """A revoked key stays revoked: it cannot be enabled or edited."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as the gateway sees it, with what it reads of its account (wallet, group, status); never
    holds the secret. `balance` is the account's: every key of an account spends from one wallet."""

    id: int
    public_id: str
    account_id: int
    account_name: str
    account_status: str
    role: str  # the account's
    name: str
    prefix: str
    group: str  # the account's
    balance: int  # nano-USD, the account's wallet
    models: frozenset[str]  # allowlist; empty = every model
    expires_at: float | None
    rpm: int | None
    tpm: int | None
    spend_limit: int | None  # nano-USD per spend_period; None = only the wallet limits it
    spend_period: str | None  # total | day | month (UTC)
    allow_ips: tuple[str, ...]  # CIDRs; empty = any address
    status: str  # active | disabled | revoked
    created_at: float

    def usable_at(self, now: float) -> bool:
        return (
            self.status == "active"
            and self.account_status == "active"
            and (self.expires_at is None or now < self.expires_at)
        )

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models


def new_secret() -> str:
    """`sk-tb-` + 40 base62 characters from the OS CSPRNG (~238 bits)."""
    return KEY_PREFIX + ids.base62(KEY_RANDOM_CHARS)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


_SELECT = """
    SELECT k.id, k.public_id, k.account_id, a.name AS account_name, a.status AS account_status, a.role,
           k.name, k.prefix, a.group_name, a.balance, k.expires_at, k.rpm, k.tpm, k.spend_limit, k.spend_period,
           k.allow_ips, k.status, k.created_at,
           (SELECT json_group_array(model) FROM api_key_models WHERE key_id = k.id) AS models
    FROM api_keys k JOIN accounts a ON a.id = k.account_id
"""


def _record(row: aiosqlite.Row | sqlite3.Row) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        public_id=row["public_id"],
        account_id=row["account_id"],
        account_name=row["account_name"],
        account_status=row["account_status"],
        role=row["role"],
        name=row["name"],
        prefix=row["prefix"],
        group=row["group_name"],
        balance=row["balance"],
        models=frozenset(orjson.loads(row["models"])),
        expires_at=row["expires_at"],
        rpm=row["rpm"],
        tpm=row["tpm"],
        spend_limit=row["spend_limit"],
        spend_period=row["spend_period"],
        allow_ips=tuple(orjson.loads(row["allow_ips"])) if row["allow_ips"] else (),
        status=row["status"],
        created_at=row["created_at"],
    )


def _allow_ips_column(allow_ips: tuple[str, ...]) -> str | None:
    return orjson.dumps(list(allow_ips)).decode() if allow_ips else None


_KEY_OPTIONS = frozenset({"expires_at", "rpm", "tpm", "spend_limit", "spend_period", "allow_ips"})


def insert_key_row(
    conn: sqlite3.Connection, *, account_id: int, name: str, models: tuple[str, ...] = (), **options: Any
) -> tuple[int, str]:
    """Inside the caller's transaction: the key row and its allowlist; returns (key id, secret).
    `options`: those of insert_key."""
    unknown = set(options) - _KEY_OPTIONS
    if unknown:
        raise TypeError(f"not a key option: {', '.join(sorted(unknown))}")
    columns = {column: options.get(column) for column in sorted(_KEY_OPTIONS)}
    if columns["spend_limit"] is not None and columns["spend_period"] is None:
        columns["spend_period"] = "total"
    columns["allow_ips"] = _allow_ips_column(tuple(columns["allow_ips"] or ()))
    secret = new_secret()
    try:
        cur = conn.execute(
            f"INSERT INTO api_keys (public_id, account_id, name, key_hash, prefix, created_at, {', '.join(columns)})"
            f" VALUES (?, ?, ?, ?, ?, ?{', ?' * len(columns)})",
            (
                ids.public_id("key_"), account_id, name, hash_secret(secret), secret[:DISPLAY_PREFIX_CHARS],
                time.time(), *columns.values(),
            ),
        )  # fmt: skip
    except sqlite3.IntegrityError as exc:
        if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
            raise AccountNotFound(f"no account with id {account_id}") from exc
        raise KeyExists(f"the account already has a key named {name!r}") from exc
    key_id = int(cur.lastrowid or 0)
    conn.executemany("INSERT INTO api_key_models (key_id, model) VALUES (?, ?)", [(key_id, m) for m in models])
    return key_id, secret


async def insert_key(
    db: Database,
    *,
    account_id: int,
    name: str,
    models: tuple[str, ...] = (),
    expires_at: float | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    spend_limit: int | None = None,
    spend_period: str | None = None,
    allow_ips: tuple[str, ...] = (),
) -> tuple[KeyRecord, str]:
    """A key under the account `account_id`; returns the record and the secret, shown once.
    KeyExists if the account has a key of that name, AccountNotFound if there is no such account."""

    def change(conn: sqlite3.Connection) -> tuple[KeyRecord, str]:
        key_id, secret = insert_key_row(
            conn, account_id=account_id, name=name, models=models, expires_at=expires_at, rpm=rpm, tpm=tpm,
            spend_limit=spend_limit, spend_period=spend_period, allow_ips=allow_ips,
        )  # fmt: skip
        return _record(conn.execute(_SELECT + " WHERE k.id = ?", (key_id,)).fetchone()), secret

    return await db.write(change)


async def insert_key_with_account(
    db: Database,
    *,
    name: str,
    account: str | None = None,
    credit: int = 0,
    group: str | None = None,
    note: str | None = "opening credit",
    **key_options: Any,
) -> tuple[KeyRecord, str]:
    """The CLI's `keys create NAME [--account A] [--credit USD]` (and the laptop habit `keys create alice
    --credit 5`): the key `name` under the account `account` (default: `name`), which is created if
    it does not exist (in `group`, default `default`); `credit` goes to that account as one ledger
    row. One transaction: a refused key leaves no account or credit behind."""
    account_name = account or name
    check_credit(credit)

    def change(conn: sqlite3.Connection) -> tuple[KeyRecord, str]:
        found = conn.execute("SELECT id FROM accounts WHERE name = ?", (account_name,)).fetchone()
        if found is None:
            account_id = insert_account_row(conn, name=account_name, group=group or "default")
        else:
            account_id = int(found[0])
            if group is not None:
                conn.execute("UPDATE accounts SET group_name = ? WHERE id = ?", (group, account_id))
        key_id, secret = insert_key_row(conn, account_id=account_id, name=name, **key_options)
        if credit:
            credit_account(conn, account_id, credit, note=note)
        return _record(conn.execute(_SELECT + " WHERE k.id = ?", (key_id,)).fetchone()), secret

    return await db.write(change)


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


async def get_key_by_name(db: Database, name: str, *, account: str | None = None) -> KeyRecord | None:
    """The key `name` (of the account `account`, if given); KeyNameAmbiguous if several accounts have
    one of that name and no account was given."""
    sql, params = _SELECT + " WHERE k.name = ?", [name]
    if account is not None:
        sql += " AND a.name = ?"
        params.append(account)
    async with db.reader.execute(sql + " ORDER BY k.id", params) as cur:
        rows = list(await cur.fetchall())
    if len(rows) > 1:
        owners = ", ".join(row["account_name"] for row in rows)
        raise KeyNameAmbiguous(f"the accounts {owners} each have a key named {name!r}: name the account too")
    return _record(rows[0]) if rows else None


async def get_key_by_public_id(db: Database, public_id: str) -> KeyRecord | None:
    async with db.reader.execute(_SELECT + " WHERE k.public_id = ?", (public_id,)) as cur:
        row = await cur.fetchone()
    return None if row is None else _record(row)


async def list_keys(db: Database, *, account_id: int | None = None) -> list[KeyRecord]:
    where, params = ("", ()) if account_id is None else (" WHERE k.account_id = ?", (account_id,))
    async with db.reader.execute(_SELECT + where + " ORDER BY k.id", params) as cur:
        return [_record(row) for row in await cur.fetchall()]


async def count_keys(db: Database) -> int:
    async with db.reader.execute("SELECT COUNT(*) FROM api_keys") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


_EDITABLE = frozenset({"status", "expires_at", "rpm", "tpm", "spend_limit", "spend_period", "allow_ips"})


async def update_key(
    db: Database, public_id: str, *, columns: dict[str, object], models: tuple[str, ...] | None = None
) -> KeyRecord:
    """Edit what auth and admission read about a key: status (`active` / `disabled`), expiry, rate
    limits, spend limit and period, `allow_ips` (a tuple of CIDRs); `models` replaces the allowlist.
    Each moves the m003 `key_changes` version, so every process drops its cached copy. A spend limit
    set without a period is over `total`; a revoked key cannot be enabled again (KeyRevoked)."""
    unknown = set(columns) - _EDITABLE
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    if columns.get("status", "active") not in ("active", "disabled"):
        raise ValueError("status must be active or disabled (revoke_key revokes)")
    values = dict(columns)
    if "allow_ips" in values:
        values["allow_ips"] = _allow_ips_column(tuple(values["allow_ips"] or ()))  # type: ignore[arg-type]

    def change(conn: sqlite3.Connection) -> KeyRecord:
        row = conn.execute("SELECT id, status, spend_period FROM api_keys WHERE public_id = ?", (public_id,)).fetchone()
        if row is None:
            raise KeyNotFound(f"no key with id {public_id!r}")
        if row["status"] == "revoked" and "status" in values:
            raise KeyRevoked(f"the key {public_id!r} is revoked: make a new one")
        if values.get("spend_limit") is not None and values.get("spend_period", row["spend_period"]) is None:
            values["spend_period"] = "total"
        if values:
            assignments = ", ".join(f"{column} = ?" for column in values)
            conn.execute(f"UPDATE api_keys SET {assignments} WHERE id = ?", (*values.values(), row["id"]))
        if models is not None:
            conn.execute("DELETE FROM api_key_models WHERE key_id = ?", (row["id"],))
            conn.executemany(
                "INSERT INTO api_key_models (key_id, model) VALUES (?, ?)", [(row["id"], m) for m in models]
            )
        return _record(conn.execute(_SELECT + " WHERE k.id = ?", (row["id"],)).fetchone())

    return await db.write(change)


async def revoke_key(db: Database, public_id: str) -> KeyRecord:
    """The next request with the key is refused (auth reads the row per request, or drops its cache)."""

    def change(conn: sqlite3.Connection) -> KeyRecord:
        found = conn.execute(
            "UPDATE api_keys SET status = 'revoked' WHERE public_id = ? RETURNING id", (public_id,)
        ).fetchall()
        if not found:
            raise KeyNotFound(f"no key with id {public_id!r}")
        return _record(conn.execute(_SELECT + " WHERE k.id = ?", (found[0][0],)).fetchone())

    return await db.write(change)
