"""The in-memory key cache: dropped when a key changes, never refilled by a read that raced a change."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenbridge.store.db import Database
from tokenbridge.store.keys import (
    KeyCache,
    KeyNotFound,
    KeyRecord,
    get_key_by_name,
    get_keys_version,
    insert_key,
    update_key_limits,
    update_key_revoked,
)
from tokenbridge.store.ledger import insert_credit


def record(name: str = "k") -> KeyRecord:
    return KeyRecord(1, name, "sk-tb-abcdef", "default", 0, frozenset(), None, None, None, "active", 0.0)


def test_key_cache_serves_until_the_version_moves() -> None:
    cache = KeyCache()
    cache.observe(3)
    cache.put("h", record(), seen_at=3)
    assert cache.get("h") == record()
    cache.observe(3)
    assert cache.get("h") == record()
    cache.observe(4)
    assert cache.get("h") is None


def test_key_cache_drops_a_read_that_raced_a_change() -> None:
    cache = KeyCache()
    cache.observe(3)
    seen_at = cache.version  # a lookup starts...
    cache.observe(4)  # ...a revoke lands meanwhile...
    cache.put("h", record(), seen_at=seen_at)  # ...and its (stale) result must not be kept
    assert cache.get("h") is None


async def test_keys_version_moves_on_key_changes_but_not_on_balance(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.db")
    try:
        start = await get_keys_version(db)
        await insert_key(db, name="a", credit=100)
        created = await get_keys_version(db)
        assert created > start
        await insert_credit(db, "a", 50)
        assert await get_keys_version(db) == created  # a top-up is not a key change
        await update_key_revoked(db, "a")
        assert await get_keys_version(db) > created
    finally:
        await db.close()


async def test_update_key_limits_moves_the_version_for_every_edited_field(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.db")
    try:
        await insert_key(db, name="a", models=("m1",))
        edits: list[tuple[dict[str, object], tuple[str, ...] | None]] = [
            ({"group_name": "gold"}, None),
            ({"expires_at": 5.0}, None),
            ({"rpm": 3}, None),
            ({"tpm": 9}, None),
            ({}, ("m2", "m3")),
        ]
        for columns, models in edits:
            before = await get_keys_version(db)
            await update_key_limits(db, "a", columns=columns, models=models)
            assert await get_keys_version(db) > before, columns or models
        key = await get_key_by_name(db, "a")
        assert key is not None and (key.group, key.expires_at, key.rpm, key.tpm) == ("gold", 5.0, 3, 9)
        assert key.models == {"m2", "m3"}
        with pytest.raises(KeyNotFound):
            await update_key_limits(db, "nobody", columns={"rpm": 1})
        with pytest.raises(ValueError, match="balance"):
            await update_key_limits(db, "a", columns={"balance": 10**12})  # money moves only through the ledger
    finally:
        await db.close()
