"""Accounts, wallets shared by their keys, key spend limits, and redemption codes (SPEC §9, §10)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tokenbridge.passwords import hash_password
from tokenbridge.store.accounts import (
    AccountExists,
    InvalidAccountName,
    account_spending,
    get_account_by_id,
    get_account_by_name,
    get_password_hash,
    insert_account,
    list_accounts,
    list_ledger,
    update_account,
)
from tokenbridge.store.codes import CodeUsed, InvalidCode, create_codes, disable_code, list_codes, redeem_code
from tokenbridge.store.db import Database
from tokenbridge.store.keys import KeyExists, KeyRecord, get_key_by_name, insert_key, insert_key_with_account
from tokenbridge.store.ledger import Refusal, get_ledger_sum, reserve_hold, settle_hold
from tokenbridge.store.usage import UsageRow


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with await Database.open(tmp_path / "t.db") as database:
        yield database


def charge(key: KeyRecord, request_id: str, cost: int, created_at: float) -> UsageRow:
    return UsageRow(
        request_id=request_id, created_at=created_at, key_id=key.id, route="chat", model="m", channel="c",
        upstream_model="m", status=200, stream=False, prompt_tokens=1, completion_tokens=1, cached_tokens=0,
        cost=cost, usage_source="upstream", end_reason="complete", attempts=1, latency_ms=1.0, ttfb_ms=None,
        error=None,
    )  # fmt: skip


async def test_insert_account_names_are_unique_case_insensitively(db: Database) -> None:
    alice = await insert_account(db, name="Alice", credit=500, note="welcome")
    assert (alice.name, alice.role, alice.status, alice.group, alice.balance) == (
        "Alice",
        "member",
        "active",
        "default",
        500,
    )
    with pytest.raises(AccountExists):
        await insert_account(db, name="alice")
    with pytest.raises(InvalidAccountName):
        await insert_account(db, name="no spaces")
    assert await get_account_by_name(db, "ALICE") == alice == await get_account_by_id(db, alice.id)
    assert [row["note"] for row in await list_ledger(db, alice.id)] == ["welcome"]
    assert [a.name for a in await list_accounts(db, search="lic")] == ["Alice"]
    assert await list_accounts(db, search="%") == []  # LIKE wildcards are searched for, not obeyed


async def test_update_account_password_ends_the_sessions_in_the_same_change(db: Database) -> None:
    bob = await insert_account(db, name="bob")
    assert await get_password_hash(db, bob.id) is None
    await db.write(
        lambda conn: conn.execute(
            "INSERT INTO sessions (token_hash, account_id, created_at, expires_at, last_seen_at) VALUES ('h', ?, 0, 1, 0)",
            (bob.id,),
        )
    )
    stored = hash_password("a new password")
    changed = await update_account(db, "bob", password_hash=stored, role="admin")
    assert changed.role == "admin" and await get_password_hash(db, bob.id) == stored
    async with db.reader.execute("SELECT COUNT(*) FROM sessions") as cur:
        assert (await cur.fetchone())[0] == 0


async def test_keys_of_one_account_share_its_wallet_and_group(db: Database) -> None:
    first, _ = await insert_key_with_account(db, name="laptop", account="carol", credit=1_000, group="gold")
    account = await get_account_by_name(db, "carol")
    assert account is not None and first.account_id == account.id and first.group == "gold"
    second, _ = await insert_key(db, account_id=account.id, name="ci", spend_limit=300)
    assert (second.balance, second.group, second.spend_period) == (1_000, "gold", "total")
    with pytest.raises(KeyExists):
        await insert_key(db, account_id=account.id, name="ci")
    other, _ = await insert_key_with_account(db, name="ci", account="dan")  # names are unique within an account
    assert other.account_name == "dan"
    assert await reserve_hold(db, key_id=first.id, account_id=account.id, request_id="a", amount=800) is None
    assert await reserve_hold(db, key_id=second.id, account_id=account.id, request_id="b", amount=201) == Refusal(
        "wallet"
    )  # the wallet is the account's: 1000 - 800 held by the other key
    await settle_hold(db, charge(first, "a", 500, 1.0))
    assert await reserve_hold(db, key_id=second.id, account_id=account.id, request_id="c", amount=301) == Refusal(
        "key_limit"
    )  # the wallet has 500, the key's limit 300
    assert await reserve_hold(db, key_id=second.id, account_id=account.id, request_id="d", amount=300) is None
    assert await account_spending(db, account.id) == (500, 300)
    assert await get_ledger_sum(db, account.id) == (await get_key_by_name(db, "laptop")).balance == 500  # type: ignore[union-attr]
    [charged, opening] = await list_ledger(db, account.id)
    assert (charged["kind"], charged["amount"], charged["key"], charged["request_id"]) == (
        "charge",
        -500,
        "laptop",
        "a",
    )
    assert opening["kind"] == "credit" and opening["key"] is None


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


async def test_reserve_hold_day_limit_resets_at_midnight_utc(db: Database) -> None:
    key, _ = await insert_key_with_account(db, name="daily", credit=10_000, spend_limit=100, spend_period="day")
    late = utc(2026, 3, 14, 23, 59, 0)
    assert (
        await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r1", amount=90, now=late) is None
    )
    await settle_hold(db, charge(key, "r1", 90, late))
    refusal = await reserve_hold(
        db, key_id=key.id, account_id=key.account_id, request_id="r2", amount=20, now=utc(2026, 3, 14, 23, 59, 59)
    )
    assert refusal == Refusal("key_limit") and refusal.available == 10
    midnight = utc(2026, 3, 15, 0, 0, 0)
    assert (
        await reserve_hold(db, key_id=key.id, account_id=key.account_id, request_id="r3", amount=100, now=midnight)
        is None
    )


async def test_reserve_hold_month_limit_counts_the_whole_month(db: Database) -> None:
    key, _ = await insert_key_with_account(db, name="monthly", credit=10_000, spend_limit=100, spend_period="month")
    await settle_hold(db, charge(key, "r1", 60, utc(2026, 3, 1, 0, 0, 1)))
    args = {"key_id": key.id, "account_id": key.account_id, "amount": 50}
    assert await reserve_hold(db, request_id="r2", now=utc(2026, 3, 31, 23, 0), **args) == Refusal("key_limit")
    assert await reserve_hold(db, request_id="r3", now=utc(2026, 4, 1), **args) is None


async def test_codes_redeem_once_and_refuse_alike(db: Database) -> None:
    made = await create_codes(db, amount=2_000, count=50, note="launch")
    assert len({code for _, code in made}) == 50
    assert all(code.startswith("tbc-") and len(code) >= 24 and record.status == "unused" for record, code in made)
    alice, bob = await insert_account(db, name="alice"), await insert_account(db, name="bob")
    (first, code), (second, other), (third, _) = made[0], made[1], made[2]
    assert await redeem_code(db, alice.id, code.lower()) == (2_000, 2_000)  # base32 is case-free
    await disable_code(db, second.public_id)
    with pytest.raises(CodeUsed):
        await disable_code(db, first.public_id)
    [(expiring, expired_code)] = await create_codes(db, amount=5, count=1, expires_at=1.0)
    messages = set()
    for attempt in (code, other, expired_code, "tbc-NOSUCHCODE234567ABCDEFG"):
        with pytest.raises(InvalidCode) as refused:
            await redeem_code(db, bob.id, attempt)
        messages.add(str(refused.value))
    assert len(messages) == 1  # used, disabled, expired, unknown: one answer
    statuses = {c.public_id: (c.status, c.redeemed_by) for c in await list_codes(db)}
    assert statuses[first.public_id] == ("used", "alice") and statuses[second.public_id] == ("disabled", None)
    assert statuses[expiring.public_id] == ("expired", None) and statuses[third.public_id] == ("unused", None)
    [row] = await list_ledger(db, alice.id)
    assert (row["kind"], row["amount"], row["code"]) == ("redeem", 2_000, first.prefix)
    assert (await get_account_by_name(db, "bob")).balance == 0  # type: ignore[union-attr]


async def test_codes_two_accounts_racing_for_one_code_get_one_credit(tmp_path: Path, db: Database) -> None:
    [(_, code)] = await create_codes(db, amount=700, count=1)
    one, two = await insert_account(db, name="one"), await insert_account(db, name="two")
    async with await Database.open(tmp_path / "t.db") as other:  # another process's writer
        results = await asyncio.gather(
            redeem_code(db, one.id, code), redeem_code(other, two.id, code), return_exceptions=True
        )
    assert sorted(type(r).__name__ for r in results) == ["InvalidCode", "tuple"]
    balances = [(await get_account_by_id(db, a.id)).balance for a in (one, two)]  # type: ignore[union-attr]
    assert sorted(balances) == [0, 700]
    assert [await get_ledger_sum(db, a.id) for a in (one, two)] == balances
