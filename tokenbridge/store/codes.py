"""Redemption codes (SPEC §10): top-ups without a payment processor, made in bulk, each redeemed once.

A code is `tbc-` + 24 random base32 characters (120 bits), shown once when made; only its SHA-256 is
stored, with its first characters to tell codes apart. Redeeming is one conditional UPDATE … RETURNING
that claims the code only if it is active, unclaimed and unexpired, then the `redeem` ledger row and
the wallet's credit, in the same transaction: two accounts racing for one code get exactly one
credit, and a used, disabled, expired or unknown code is refused alike (InvalidCode).
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass

import aiosqlite

from tokenbridge import ids
from tokenbridge.money import MAX_NANO, format_usd
from tokenbridge.store.accounts import credit_account
from tokenbridge.store.db import Database

CODE_PREFIX = "tbc-"
CODE_RANDOM_CHARS = 24
DISPLAY_PREFIX_CHARS = len(CODE_PREFIX) + 6  # "tbc-ABC234": tells codes apart, useless to redeem
MAX_CODES_AT_ONCE = 10_000
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648: no 0/1/8/9, nothing to misread on paper


class InvalidCode(Exception):
    """Used, disabled, expired or unknown: one answer for all, so probing tells nothing."""


class CodeNotFound(Exception):
    """No code has that id."""


class CodeUsed(Exception):
    """The code was redeemed already: it can no longer be disabled."""


@dataclass(frozen=True, slots=True)
class CodeRecord:
    id: int
    public_id: str
    prefix: str
    amount: int  # nano-USD
    status: str  # unused | used | expired | disabled
    expires_at: float | None
    note: str | None
    created_at: float
    redeemed_by: str | None  # the account's name
    redeemed_at: float | None


def new_code() -> str:
    return CODE_PREFIX + "".join(secrets.choice(_BASE32) for _ in range(CODE_RANDOM_CHARS))


def hash_code(code: str) -> str:
    """Codes are compared as typed, trimmed and in upper case after the prefix (base32 is case-free)."""
    code = code.strip()
    if code[: len(CODE_PREFIX)].lower() == CODE_PREFIX:
        code = CODE_PREFIX + code[len(CODE_PREFIX) :].upper()
    return hashlib.sha256(code.encode()).hexdigest()


_SELECT = """
    SELECT c.id, c.public_id, c.prefix, c.amount, c.status, c.expires_at, c.note, c.created_at,
           a.name AS redeemed_by, c.redeemed_at
    FROM redemption_codes c LEFT JOIN accounts a ON a.id = c.redeemed_by
"""


def _status(row: aiosqlite.Row | sqlite3.Row, now: float) -> str:
    if row["redeemed_by"] is not None:
        return "used"
    if row["status"] == "disabled":
        return "disabled"
    if row["expires_at"] is not None and row["expires_at"] <= now:
        return "expired"
    return "unused"


def _record(row: aiosqlite.Row | sqlite3.Row, now: float) -> CodeRecord:
    return CodeRecord(
        id=row["id"],
        public_id=row["public_id"],
        prefix=row["prefix"],
        amount=row["amount"],
        status=_status(row, now),
        expires_at=row["expires_at"],
        note=row["note"],
        created_at=row["created_at"],
        redeemed_by=row["redeemed_by"],
        redeemed_at=row["redeemed_at"],
    )


async def create_codes(
    db: Database, *, amount: int, count: int, expires_at: float | None = None, note: str | None = None
) -> list[tuple[CodeRecord, str]]:
    """`count` codes of `amount` nano-USD each, in one transaction; each with its code, shown only now."""
    if not 0 <= amount <= MAX_NANO:
        raise ValueError(f"a code's amount must be from 0 to {format_usd(MAX_NANO)} USD")
    if not 1 <= count <= MAX_CODES_AT_ONCE:
        raise ValueError(f"the count must be from 1 to {MAX_CODES_AT_ONCE}")
    codes = [new_code() for _ in range(count)]
    now = time.time()

    def change(conn: sqlite3.Connection) -> list[tuple[CodeRecord, str]]:
        made = []
        for code in codes:
            cur = conn.execute(
                "INSERT INTO redemption_codes (public_id, code_hash, prefix, amount, expires_at, note, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ids.public_id("code_"), hash_code(code), code[:DISPLAY_PREFIX_CHARS], amount, expires_at, note, now),
            )
            made.append((_record(conn.execute(_SELECT + " WHERE c.id = ?", (cur.lastrowid,)).fetchone(), now), code))
        return made

    return await db.write(change)


def redeem_code_row(conn: sqlite3.Connection, account_id: int, code: str, *, now: float) -> tuple[int, int]:
    """Inside the caller's transaction (a sign-up with an invite code composes it with the new account):
    claim the code for the account and credit its amount; returns (new balance, amount)."""
    claimed = conn.execute(
        "UPDATE redemption_codes SET redeemed_by = ?, redeemed_at = ?"
        " WHERE code_hash = ? AND status = 'active' AND redeemed_by IS NULL AND (expires_at IS NULL OR expires_at > ?)"
        " RETURNING id, amount, prefix",
        (account_id, now, hash_code(code), now),
    ).fetchall()
    if not claimed:
        raise InvalidCode("this code is not valid: it may be mistyped, used, expired or disabled")
    code_id, amount, prefix = claimed[0]
    balance = credit_account(conn, account_id, amount, kind="redeem", code_id=code_id, note=f"code {prefix}")
    return balance, int(amount)


async def redeem_code(db: Database, account_id: int, code: str) -> tuple[int, int]:
    """Redeem `code` into the account's wallet: (new balance, amount), or InvalidCode. Atomic: a failed
    credit (BalanceOutOfRange) leaves the code unused."""
    return await db.write(lambda conn: redeem_code_row(conn, account_id, code, now=time.time()))


async def list_codes(db: Database) -> list[CodeRecord]:
    """Every code, newest first."""
    now = time.time()
    async with db.reader.execute(_SELECT + " ORDER BY c.id DESC") as cur:
        return [_record(row, now) for row in await cur.fetchall()]


async def get_code_by_public_id(db: Database, public_id: str) -> CodeRecord | None:
    async with db.reader.execute(_SELECT + " WHERE c.public_id = ?", (public_id,)) as cur:
        row = await cur.fetchone()
    return None if row is None else _record(row, time.time())


async def disable_code(db: Database, public_id: str) -> CodeRecord:
    """Disable a code nobody redeemed (CodeUsed if somebody did, CodeNotFound if there is none)."""

    def change(conn: sqlite3.Connection) -> CodeRecord:
        done = conn.execute(
            "UPDATE redemption_codes SET status = 'disabled' WHERE public_id = ? AND redeemed_by IS NULL RETURNING id",
            (public_id,),
        ).fetchall()
        if not done:
            if conn.execute("SELECT 1 FROM redemption_codes WHERE public_id = ?", (public_id,)).fetchone() is None:
                raise CodeNotFound(f"no code with id {public_id!r}")
            raise CodeUsed(f"the code {public_id!r} was redeemed already; it cannot be disabled")
        return _record(conn.execute(_SELECT + " WHERE c.id = ?", (done[0][0],)).fetchone(), time.time())

    return await db.write(change)
