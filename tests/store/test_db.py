"""The writer thread: a batch's outcomes reach their callers one by one, whatever one of them is."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from tokenbridge.store.db import Database, StoreError


async def test_a_change_with_an_unusable_outcome_does_not_strand_its_batch(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "writer.db")
    try:
        inside, go_on = threading.Event(), threading.Event()

        def occupy(conn: sqlite3.Connection) -> None:
            inside.set()
            go_on.wait(30)

        first = asyncio.ensure_future(db.write(occupy))
        await asyncio.to_thread(inside.wait, 30)  # the writer is inside `occupy`: the next two share a batch

        def bad(conn: sqlite3.Connection) -> None:
            raise StopIteration  # a Future refuses this exception (TypeError when it is set)

        unusable = asyncio.ensure_future(db.write(bad))
        good = asyncio.ensure_future(db.write(lambda conn: conn.execute("SELECT 42").fetchone()[0]))
        go_on.set()
        await first
        # wait_for: a stranded future would hang the test; 30 s is a guard, not a timing check
        with pytest.raises(StoreError, match="unusable outcome"):
            await asyncio.wait_for(unusable, 30)
        assert await asyncio.wait_for(good, 30) == 42
    finally:
        await db.close()
