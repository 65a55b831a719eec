"""Accounts (SPEC §9): the people behind the keys, each with a role, a status, a pricing group and a wallet.

The wallet is `accounts.balance`, nano-USD, always equal to SUM(ledger.amount) of the account: every
change to it here is one conditional UPDATE plus its ledger row, in one transaction. Names are
compared case-insensitively (the column is COLLATE NOCASE). The password hash never leaves this
module but through `get_password_hash`, for the sign-in check.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import aiosqlite

from tokenbridge.keyrules import account_name
from tokenbridge.money import MAX_NANO, format_usd
from tokenbridge.store.db import Database


class AccountExists(Exception):
    """An account has that name already (case-insensitively)."""


class AccountNotFound(Exception):
    """No account has that name (or id)."""


class InvalidAccountName(ValueError):
    """Not 1 to 64 letters, digits or ._@+- characters."""


class BalanceOutOfRange(Exception):
    """The change would take a balance past ±MAX_NANO (a SQLite INTEGER); nothing was written."""


@dataclass(frozen=True, slots=True)
class AccountRecord:
    id: int
    name: str
    role: str  # admin | member
    status: str  # active | disabled
    group: str
    balance: int  # nano-USD
    created_at: float


_SELECT = "SELECT id, name, role, status, group_name, balance, created_at FROM accounts"


def _record(row: aiosqlite.Row | sqlite3.Row) -> AccountRecord:
    return AccountRecord(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        status=row["status"],
        group=row["group_name"],
        balance=row["balance"],
        created_at=row["created_at"],
    )


def checked_name(name: str) -> str:
    try:
        return account_name(name)
    except ValueError as exc:
        raise InvalidAccountName(f"the account name {name!r} {exc}") from exc


def check_credit(credit: int) -> None:
    """An opening credit SQLite can hold (BalanceOutOfRange before anything is written)."""
    if not -MAX_NANO <= credit <= MAX_NANO:
        raise BalanceOutOfRange(
            f"an opening credit of {format_usd(credit)} USD is outside ±{format_usd(MAX_NANO)} USD,"
            " the most a balance holds"
        )


def insert_account_row(
    conn: sqlite3.Connection,
    *,
    name: str,
    role: str = "member",
    group: str = "default",
    password_hash: str | None = None,
) -> int:
    """Inside the caller's transaction; returns the new account's id."""
    try:
        cur = conn.execute(
            "INSERT INTO accounts (name, password_hash, role, group_name, created_at) VALUES (?, ?, ?, ?, ?)",
            (checked_name(name), password_hash, role, group, time.time()),
        )
    except sqlite3.IntegrityError as exc:
        raise AccountExists(f"an account named {name!r} already exists") from exc
    return int(cur.lastrowid or 0)


def credit_account(
    conn: sqlite3.Connection,
    account_id: int,
    amount: int,
    *,
    note: str | None = None,
    kind: str | None = None,
    code_id: int | None = None,
) -> int:
    """Inside the caller's transaction: add `amount` to the wallet plus its ledger row; returns the new
    balance. Kind `credit` (>= 0) or `correction` (< 0) unless given (`redeem`). The ±MAX_NANO bound
    is part of the one conditional UPDATE: past it nothing changes and BalanceOutOfRange is raised."""
    row = conn.execute(
        "UPDATE accounts SET balance = balance + :amount"
        " WHERE id = :id AND balance + :amount BETWEEN -:most AND :most RETURNING balance",
        {"amount": amount, "id": account_id, "most": MAX_NANO},
    ).fetchall()
    if not row:
        found = conn.execute("SELECT name, balance FROM accounts WHERE id = ?", (account_id,)).fetchone()
        if found is None:
            raise AccountNotFound(f"no account with id {account_id}")
        raise BalanceOutOfRange(
            f"account {found[0]!r} holds {format_usd(found[1])} USD: adding {format_usd(amount)} USD would take its"
            f" balance outside ±{format_usd(MAX_NANO)} USD, the most a balance holds"
        )
    conn.execute(
        "INSERT INTO ledger (account_id, kind, amount, code_id, note, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (account_id, kind or ("credit" if amount >= 0 else "correction"), amount, code_id, note, time.time()),
    )
    return int(row[0][0])


async def insert_account(
    db: Database,
    *,
    name: str,
    role: str = "member",
    group: str = "default",
    password_hash: str | None = None,
    credit: int = 0,
    note: str | None = None,
) -> AccountRecord:
    """A new account; `credit` (if any) is its first ledger row, in the same transaction."""
    check_credit(credit)

    def change(conn: sqlite3.Connection) -> AccountRecord:
        account_id = insert_account_row(conn, name=name, role=role, group=group, password_hash=password_hash)
        if credit:
            credit_account(conn, account_id, credit, note=note or "opening credit")
        return _record(conn.execute(_SELECT + " WHERE id = ?", (account_id,)).fetchone())

    return await db.write(change)


async def _one(db: Database, where: str, value: Any) -> AccountRecord | None:
    async with db.reader.execute(f"{_SELECT} WHERE {where}", (value,)) as cur:
        row = await cur.fetchone()
    return None if row is None else _record(row)


async def get_account_by_name(db: Database, name: str) -> AccountRecord | None:
    return await _one(db, "name = ?", name)


async def get_account_by_id(db: Database, account_id: int) -> AccountRecord | None:
    return await _one(db, "id = ?", account_id)


async def list_accounts(db: Database, *, search: str | None = None) -> list[AccountRecord]:
    """Every account in creation order; `search`: only names containing it (case-insensitively)."""
    sql = f"{_SELECT} ORDER BY id"
    params: tuple[str, ...] = ()
    if search is not None:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        sql = f"{_SELECT} WHERE name LIKE ? ESCAPE '\\' ORDER BY id"
        params = (f"%{escaped}%",)
    async with db.reader.execute(sql, params) as cur:
        return [_record(row) for row in await cur.fetchall()]


async def count_accounts(db: Database) -> int:
    async with db.reader.execute("SELECT COUNT(*) FROM accounts") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def get_password_hash(db: Database, account_id: int) -> str | None:
    """For the sign-in check only (passwords.verify_password); None: no password set, or no account."""
    async with db.reader.execute("SELECT password_hash FROM accounts WHERE id = ?", (account_id,)) as cur:
        row = await cur.fetchone()
    return None if row is None else row[0]


async def update_account(
    db: Database,
    name: str,
    *,
    role: str | None = None,
    status: str | None = None,
    group: str | None = None,
    password_hash: str | None = None,
) -> AccountRecord:
    """Change what is given. A new password hash ends every session of the account, in the same
    transaction (SPEC §9: a password change signs out everywhere). Role, status and group move the
    `key_changes` version (a trigger), so auth drops the account's cached keys."""
    if role not in (None, "admin", "member") or status not in (None, "active", "disabled"):
        raise ValueError("role must be admin or member, status active or disabled")
    columns = {
        column: value
        for column, value in (
            ("role", role),
            ("status", status),
            ("group_name", group),
            ("password_hash", password_hash),
        )
        if value is not None
    }

    def change(conn: sqlite3.Connection) -> AccountRecord:
        found = conn.execute("SELECT id FROM accounts WHERE name = ?", (name,)).fetchone()
        if found is None:
            raise AccountNotFound(f"no account named {name!r}")
        if columns:
            assignments = ", ".join(f"{column} = ?" for column in columns)
            conn.execute(f"UPDATE accounts SET {assignments} WHERE id = ?", (*columns.values(), found[0]))
        if password_hash is not None:
            conn.execute("DELETE FROM sessions WHERE account_id = ?", (found[0],))
        return _record(conn.execute(_SELECT + " WHERE id = ?", (found[0],)).fetchone())

    return await db.write(change)


async def spending(db: Database, owner: str, owner_id: int) -> tuple[int, int]:
    """(spent, held) of an account (`owner` "account_id") or a key ("key_id"): the sum of its charges
    and of its open holds, both nano-USD and >= 0."""
    column = {"account_id": "account_id", "key_id": "key_id"}[owner]  # a column name, never caller text
    sql = (
        f"SELECT (SELECT COALESCE(-SUM(amount), 0) FROM ledger WHERE {column} = :id AND kind = 'charge'),"
        f" (SELECT COALESCE(SUM(amount), 0) FROM holds WHERE {column} = :id)"
    )
    async with db.reader.execute(sql, {"id": owner_id}) as cur:
        row = await cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def account_spending(db: Database, account_id: int) -> tuple[int, int]:
    """(spent, held): the sum of the account's charges and of its open holds, both nano-USD and >= 0."""
    return await spending(db, "account_id", account_id)


async def list_ledger(
    db: Database, account_id: int, *, limit: int = 100, before_id: int | None = None
) -> list[dict[str, Any]]:
    """The account's ledger rows, newest first (`before_id`: the page after the row of that id): id,
    kind, amount (nano-USD, signed), request_id, key (the name of the key that spent), code (the
    prefix of the redeemed code), note, created_at."""
    sql = (
        "SELECT l.id, l.kind, l.amount, l.request_id, k.name AS key, c.prefix AS code, l.note, l.created_at"
        " FROM ledger l LEFT JOIN api_keys k ON k.id = l.key_id LEFT JOIN redemption_codes c ON c.id = l.code_id"
        " WHERE l.account_id = ?"
    )
    params: list[Any] = [account_id]
    if before_id is not None:
        sql += " AND l.id < ?"
        params.append(before_id)
    sql += " ORDER BY l.id DESC LIMIT ?"
    params.append(limit)
    async with db.reader.execute(sql, params) as cur:
        return [dict(row) for row in await cur.fetchall()]


async def count_ledger(db: Database, account_id: int) -> int:
    """How many ledger rows the account has (a ledger listing's `total`)."""
    async with db.reader.execute("SELECT COUNT(*) FROM ledger WHERE account_id = ?", (account_id,)) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0
