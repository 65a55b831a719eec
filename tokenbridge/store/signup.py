"""A sign-up (SPEC §9, `POST /api/register`): the new account, its signup credit and its invite
code's amount, in one transaction. A code that cannot be redeemed leaves no account behind, and
two sign-ups racing for one code make one account between them (codes.redeem_code_row claims it).
"""

from __future__ import annotations

import sqlite3
import time

from tokenbridge.store.accounts import AccountRecord, credit_account, get_account_by_id, insert_account_row
from tokenbridge.store.codes import redeem_code_row
from tokenbridge.store.db import Database

SIGNUP_NOTE = "signup credit"


async def register_account(
    db: Database, *, name: str, password_hash: str, signup_credit: int, invite_code: str | None
) -> AccountRecord:
    """A member account; AccountExists for a taken name, codes.InvalidCode for a code that cannot be redeemed."""

    def change(conn: sqlite3.Connection) -> int:
        account_id = insert_account_row(conn, name=name, role="member", password_hash=password_hash)
        if signup_credit:
            credit_account(conn, account_id, signup_credit, note=SIGNUP_NOTE)
        if invite_code is not None:
            redeem_code_row(conn, account_id, invite_code, now=time.time())
        return account_id

    account = await get_account_by_id(db, await db.write(change))
    assert account is not None  # accounts are never deleted
    return account
