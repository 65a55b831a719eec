"""store/copies.py: a copy is whole and checked or not written; a broken ledger is caught; the file
moved aside keeps the rows still in its WAL; the writer's wal_autocheckpoint is what was asked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tokenbridge.store.copies import CopyFailed, check_database, copy_database, describe, move_aside
from tokenbridge.store.db import Database
from tokenbridge.store.keys import insert_key_with_account


async def a_database(path: Path, credits: int = 2) -> None:
    async with await Database.open(path) as db:
        for n in range(credits):
            await insert_key_with_account(db, name=f"k{n}", credit=(n + 1) * 10**9)


async def test_a_copy_is_checked_and_refuses_to_replace_unless_told(tmp_path: Path) -> None:
    await a_database(tmp_path / "live.db")
    check = copy_database(tmp_path / "live.db", tmp_path / "copy.db")
    assert check.ok and check.accounts == 2 and check.ledger_rows == 2 and check.total_balance == 3 * 10**9
    assert "integrity_check ok; balance == sum of ledger for all 2 accounts" in describe(check)
    assert not (tmp_path / "copy.db-wal").exists()  # one self-contained file
    with pytest.raises(CopyFailed, match="exists already"):
        copy_database(tmp_path / "live.db", tmp_path / "copy.db")
    assert copy_database(tmp_path / "live.db", tmp_path / "copy.db", replace=True).ok
    assert sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name) == []


async def test_a_balance_that_is_not_its_ledger_fails_the_check_and_writes_nothing(tmp_path: Path) -> None:
    await a_database(tmp_path / "live.db")
    with sqlite3.connect(tmp_path / "live.db") as conn:
        conn.execute("UPDATE accounts SET balance = balance + 1 WHERE name = 'k1'")  # a change with no ledger row
    assert check_database(tmp_path / "live.db").mismatched == ("k1",)
    with pytest.raises(CopyFailed, match="failed its check: .*balance != sum of ledger for k1"):
        copy_database(tmp_path / "live.db", tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()
    assert not any(p.name.startswith(".copy.db") for p in tmp_path.iterdir())


def test_a_file_that_is_no_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"junk" * 1000)
    with pytest.raises(CopyFailed, match="not a readable tokenbridge database"):
        check_database(tmp_path / "junk.db")
    with pytest.raises(CopyFailed, match="no database at"):
        copy_database(tmp_path / "absent.db", tmp_path / "copy.db")


async def test_moved_aside_the_file_keeps_the_rows_still_in_its_wal(tmp_path: Path) -> None:
    live = tmp_path / "live.db"
    await a_database(live)
    keeper = sqlite3.connect(live, isolation_level=None)  # stays open: no checkpoint on close, rows stay in the WAL
    try:
        keeper.execute("PRAGMA wal_autocheckpoint = 0")
        keeper.execute("UPDATE accounts SET group_name = 'only-in-wal'")
        aside = move_aside(live, ".before")
        assert aside == tmp_path / "live.db.before" and not live.exists()
        assert (tmp_path / "live.db.before-wal").exists()
        with sqlite3.connect(aside) as conn:
            assert {g for (g,) in conn.execute("SELECT group_name FROM accounts")} == {"only-in-wal"}
    finally:
        keeper.close()
    assert move_aside(live, ".again") is None  # nothing there any more


async def test_the_writer_takes_the_configured_wal_autocheckpoint(tmp_path: Path) -> None:
    for asked, seen in ((0, 0), (None, 1000), (250, 250)):
        async with await Database.open(tmp_path / "t.db", autocheckpoint=asked) as db:
            assert await db.write(lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) == seen
