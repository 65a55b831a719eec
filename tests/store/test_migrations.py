"""m006: a database written by the release before accounts (tests/fixtures/release-0.sql, its SQL dump,
made by tests/fixtures/make_release0.py with that release's code) opens with every key, balance and ledger row."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from openai import OpenAI

from tests.fakes.server import serve_in_thread
from tests.fixtures.release0_config import CONFIG
from tokenbridge.app import create_app
from tokenbridge.cli import main
from tokenbridge.settings import load_settings
from tokenbridge.store.accounts import get_account_by_name, list_accounts
from tokenbridge.store.db import Database
from tokenbridge.store.keys import get_key_by_hash, get_keys_version, hash_secret, list_keys
from tokenbridge.store.ledger import get_ledger_sum

FIXTURES = Path(__file__).parents[1] / "fixtures"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "release-0.json").read_text())


@pytest.fixture
def old_database(tmp_path: Path) -> Path:
    """The old release's database, rebuilt from its committed dump (text, so git holds no database file)."""
    path = tmp_path / "release-0.db"
    conn = sqlite3.connect(path)
    try:
        conn.executescript((FIXTURES / "release-0.sql").read_text())
    finally:
        conn.close()
    return path


def old_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return [tuple(row) for row in conn.execute(sql)]
    finally:
        conn.close()


async def test_m006_keeps_every_key_balance_and_ledger_row_of_the_old_release(old_database: Path) -> None:
    ledger_before = old_rows(old_database, "SELECT id, key_id, kind, amount, request_id, note, created_at FROM ledger")
    usage_before = old_rows(old_database, "SELECT request_id, key_id, cost FROM usage_events ORDER BY rowid")
    holds_before = old_rows(old_database, "SELECT request_id, key_id, amount FROM holds")
    assert "accounts" not in {r[0] for r in old_rows(old_database, "SELECT name FROM sqlite_master")}

    async with await Database.open(old_database) as db:
        keys = {k.id: k for k in await list_keys(db)}
        assert len(keys) == len(EXPECTED["keys"])
        for old in EXPECTED["keys"]:
            key = await get_key_by_hash(db, hash_secret(old["secret"]))  # the old secret still finds its key
            assert key is not None and key.id == old["id"] and key.name == old["name"]
            assert key.public_id.startswith("key_") and len(key.public_id) == 20
            assert key.balance == old["balance"] == old["ledger_sum"]  # the account holds the key's money
            assert await get_ledger_sum(db, key.account_id) == old["ledger_sum"]
            assert key.group == old["group"] and key.role == "member" and key.account_status == "active"
            assert key.status == ("revoked" if old["status"] == "revoked" else "active")
        accounts = await list_accounts(db)
        assert len(accounts) == len(keys)  # one account per key
        assert sorted(a.name for a in accounts) == sorted(["alice", "bob", "Carol", "carol-4", "dave", "erin", "zero"])
        carol = await get_account_by_name(db, "carol-4")  # "carol" equals "Carol" but for case: the later key's
        assert carol is not None and carol.id == 4 and keys[4].name == "carol"  # account is named NAME-<key id>
        assert await get_keys_version(db) > 0

    after = old_rows(old_database, "SELECT id, account_id, kind, amount, request_id, note, created_at FROM ledger")
    assert after == ledger_before  # every row, its id, kind, amount, request id, note and time
    charges = old_rows(old_database, "SELECT request_id, key_id FROM ledger WHERE kind = 'charge'")
    assert charges == [(rid, key_id) for _, key_id, kind, _, rid, _, _ in ledger_before if kind == "charge"]
    usage = old_rows(old_database, "SELECT request_id, key_id, cost FROM usage_events ORDER BY rowid")
    assert usage == usage_before and len(usage) == sum(k["usage_rows"] for k in EXPECTED["keys"])
    assert old_rows(old_database, "SELECT COUNT(*) FROM usage_events WHERE account_id IS NOT key_id") == [(0,)]
    assert old_rows(old_database, "SELECT request_id, key_id, amount FROM holds") == holds_before
    assert old_rows(old_database, "SELECT COUNT(*) FROM holds WHERE account_id IS NOT key_id") == [(0,)]
    assert old_rows(old_database, "PRAGMA foreign_key_check") == []
    assert old_rows(old_database, "PRAGMA integrity_check") == [("ok",)]


async def test_m006_runs_once_and_a_second_open_changes_nothing(old_database: Path) -> None:
    async with await Database.open(old_database):
        pass
    first = old_rows(old_database, "SELECT id, public_id, account_id, name FROM api_keys ORDER BY id")
    async with await Database.open(old_database):
        pass
    assert old_rows(old_database, "SELECT id, public_id, account_id, name FROM api_keys ORDER BY id") == first
    assert old_rows(old_database, "SELECT COUNT(*) FROM schema_migrations WHERE name = 'm006_accounts'") == [(1,)]


async def test_m006_keeps_the_key_change_triggers_and_adds_the_accounts(old_database: Path) -> None:
    async with await Database.open(old_database) as db:
        version = await get_keys_version(db)
        await db.write(lambda conn: conn.execute("UPDATE accounts SET status = 'disabled' WHERE name = 'alice'"))
        moved = await get_keys_version(db)
        assert moved > version  # auth caches a key with its account's status
        await db.write(lambda conn: conn.execute("UPDATE accounts SET balance = balance WHERE name = 'bob'"))
        assert await get_keys_version(db) == moved  # a wallet change is not a key change
        await db.write(lambda conn: conn.execute("UPDATE api_keys SET rpm = 5 WHERE name = 'bob'"))
        assert await get_keys_version(db) > moved


def test_m006_every_old_key_works_with_its_old_secret_through_the_gateway(
    old_database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real gateway (and the CLI) on the migrated file: each active key answers the openai SDK with
    its old secret and is billed to its account; the revoked and the expired one get 401, the key
    without money 429; nothing else moved."""
    [(rows_before,)] = old_rows(old_database, "SELECT MAX(rowid) FROM usage_events")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(database=old_database))
    refusals = {"revoked": openai.AuthenticationError, "expired": openai.AuthenticationError}
    with serve_in_thread(create_app(load_settings(config))) as url:
        for old in EXPECTED["keys"]:
            client = OpenAI(api_key=old["secret"], base_url=url + "/v1", max_retries=0, timeout=20)
            expected = refusals.get(old["status"]) or (openai.RateLimitError if old["balance"] == 0 else None)
            try:
                if expected is None:
                    said = client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "ok"}])
                    assert said.choices[0].message.content == "ok", old["name"]
                else:
                    with pytest.raises(expected) as refused:
                        client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "no"}])
                    code = "invalid_api_key" if expected is openai.AuthenticationError else "insufficient_quota"
                    assert refused.value.code == code, old["name"]
            finally:
                client.close()
    new = old_rows(old_database, f"SELECT key_id, account_id, cost FROM usage_events WHERE rowid > {rows_before}")
    paid = [(key_id, account_id, cost) for key_id, account_id, cost in new if cost > 0]
    assert sorted(key_id for key_id, _, _ in paid) == [1, 2, 3, 4]  # alice, bob, Carol, carol: each once
    broke = [old["name"] for old in EXPECTED["keys"] if old["balance"] == 0 and old["status"] == "active"]
    assert len(new) - len(paid) == len(broke)  # the 429s: a refused row each, cost 0 (issue 14); the 401s none
    assert all(key_id == account_id for key_id, account_id, _ in new)
    cost = {key_id: cost for key_id, _, cost in paid}
    assert main(["keys", "list", "--json", "--config", str(config)]) == 0
    listed = {k["name"]: k for k in orjson.loads(capsys.readouterr().out)}
    for old in EXPECTED["keys"]:
        shown = listed[old["name"]]
        assert shown["balance_nano_usd"] == old["balance"] - cost.get(old["id"], 0), old["name"]
        assert shown["account"] == ("carol-4" if old["name"] == "carol" else old["name"])
    sums = dict(old_rows(old_database, "SELECT account_id, SUM(amount) FROM ledger GROUP BY account_id"))
    assert dict(old_rows(old_database, "SELECT id, balance FROM accounts WHERE balance != 0")) == sums
    assert old_rows(old_database, "SELECT COUNT(*) FROM holds") == [(0,)]  # the crashed process's hold is gone
