"""The in-memory key cache: dropped when a key changes, never refilled by a read that raced a change."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenbridge.store.accounts import update_account
from tokenbridge.store.db import Database
from tokenbridge.store.keys import (
    KeyCache,
    KeyNotFound,
    KeyRecord,
    get_key_by_name,
    get_keys_version,
    insert_key_with_account,
    revoke_key,
    update_key,
)
from tokenbridge.store.ledger import insert_credit


def record(name: str = "k") -> KeyRecord:
    return KeyRecord(
        id=1, public_id="key_abc", account_id=1, account_name=name, account_status="active", role="member", name=name,
        prefix="sk-tb-abcdef", group="default", balance=0, models=frozenset(), expires_at=None, rpm=None, tpm=None,
        spend_limit=None, spend_period=None, allow_ips=(), status="active", created_at=0.0,
    )  # fmt: skip


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
        made, _ = await insert_key_with_account(db, name="a", credit=100)
        created = await get_keys_version(db)
        assert created > start
        await insert_credit(db, "a", 50)
        assert await get_keys_version(db) == created  # a top-up is not a key change
        await revoke_key(db, made.public_id)
        assert await get_keys_version(db) > created
    finally:
        await db.close()


async def test_update_key_moves_the_version_for_every_edited_field(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.db")
    try:
        made, _ = await insert_key_with_account(db, name="a", models=("m1",))
        edits: list[tuple[dict[str, object], tuple[str, ...] | None]] = [
            ({"expires_at": 5.0}, None),
            ({"rpm": 3}, None),
            ({"tpm": 9}, None),
            ({"spend_limit": 7, "spend_period": "day"}, None),
            ({"allow_ips": ("10.0.0.0/8",)}, None),
            ({"status": "disabled"}, None),
            ({}, ("m2", "m3")),
        ]
        for columns, models in edits:
            before = await get_keys_version(db)
            await update_key(db, made.public_id, columns=columns, models=models)
            assert await get_keys_version(db) > before, columns or models
        before = await get_keys_version(db)
        await update_account(db, "a", group="gold")  # the account's group is what auth caches with the key
        assert await get_keys_version(db) > before
        key = await get_key_by_name(db, "a")
        assert key is not None and (key.group, key.expires_at, key.rpm, key.tpm) == ("gold", 5.0, 3, 9)
        assert (key.spend_limit, key.spend_period, key.allow_ips, key.status) == (7, "day", ("10.0.0.0/8",), "disabled")
        assert key.models == {"m2", "m3"}
        with pytest.raises(KeyNotFound):
            await update_key(db, "key_nobody", columns={"rpm": 1})
        with pytest.raises(ValueError, match="balance"):
            await update_key(db, made.public_id, columns={"balance": 10**12})  # money moves only through the ledger
    finally:
        await db.close()
