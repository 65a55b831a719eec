"""Sessions and sign-in failures (store/sessions.py) on a real SQLite file: tokens stored only hashed,
expiry, sign-out, a password change ending them, and the throttle's counts."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tokenbridge.store.accounts import insert_account, update_account
from tokenbridge.store.db import Database
from tokenbridge.store.sessions import (
    delete_session,
    get_session_account_id,
    hash_token,
    insert_failure,
    insert_session,
    list_recent_failures,
)

T0 = 1_700_000_000.0


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "t.db")
    try:
        yield database
    finally:
        await database.close()


async def test_session_token_is_random_stored_only_hashed_and_finds_its_account(db: Database, tmp_path: Path) -> None:
    account = await insert_account(db, name="alice", password_hash="x")
    tokens = {await insert_session(db, account.id, lifetime_s=60, now=T0) for _ in range(3)}
    assert len(tokens) == 3 and all(len(t) >= 43 for t in tokens)  # 32 random bytes each
    for token in tokens:
        assert await get_session_account_id(db, token, now=T0 + 1) == account.id
    with sqlite3.connect(tmp_path / "t.db") as conn:
        stored = {row[0] for row in conn.execute("SELECT token_hash FROM sessions")}
    assert stored == {hash_token(t) for t in tokens} and not stored & tokens


async def test_session_expires_and_sign_out_ends_it(db: Database) -> None:
    account = await insert_account(db, name="bob", password_hash="x")
    token = await insert_session(db, account.id, lifetime_s=60, now=T0)
    assert await get_session_account_id(db, token, now=T0 + 59) == account.id
    assert await get_session_account_id(db, token, now=T0 + 60) is None
    other = await insert_session(db, account.id, lifetime_s=60, now=T0)
    await delete_session(db, other)
    assert await get_session_account_id(db, other, now=T0) is None
    assert await get_session_account_id(db, "not-a-token", now=T0) is None


async def test_a_password_change_ends_every_session_of_that_account_only(db: Database) -> None:
    alice = await insert_account(db, name="carol", password_hash="x")
    dave = await insert_account(db, name="dave", password_hash="x")
    carols = [await insert_session(db, alice.id, lifetime_s=60) for _ in range(2)]
    daves = await insert_session(db, dave.id, lifetime_s=60)
    await update_account(db, "carol", password_hash="y")
    assert [await get_session_account_id(db, t) for t in carols] == [None, None]
    assert await get_session_account_id(db, daves) == dave.id


async def test_recent_failures_count_by_name_or_address_within_the_window(db: Database) -> None:
    for i in range(5):
        await insert_failure(db, name="sign-in:eve", address="sign-in:10.0.0.1", now=T0 + i)
    await insert_failure(db, name="sign-in:frank", address="sign-in:10.0.0.1", now=T0 + 10)
    by_name = await list_recent_failures(db, by="name", value="sign-in:eve", since=T0 + 2, limit=10)
    assert by_name == [T0 + 4, T0 + 3, T0 + 2]  # newest first, the window's only
    by_address = await list_recent_failures(db, by="address", value="sign-in:10.0.0.1", since=T0, limit=4)
    assert by_address == [T0 + 10, T0 + 4, T0 + 3, T0 + 2]  # at most `limit`
    with pytest.raises(KeyError):
        await list_recent_failures(db, by="name; DROP TABLE accounts", value="x", since=T0, limit=1)
