"""`tokenbridge accounts|keys|credit|codes` as a user runs them (a real subprocess), against a running
gateway sharing the database (SPEC §9, §10)."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
import time
from typing import Any

import openai
import orjson

from tests.conftest import Gateway
from tokenbridge.passwords import verify_password
from tokenbridge.settings import load_settings
from tokenbridge.store.accounts import get_account_by_name, get_password_hash, list_ledger
from tokenbridge.store.codes import redeem_code
from tokenbridge.store.db import Database

MESSAGES = [{"role": "user", "content": "hi"}]


def cli_json(gateway: Gateway, *args: str, stdin: str | None = None) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "tokenbridge", *args, "--json", "--config", str(gateway.config)],
        capture_output=True, text=True, timeout=60, input=stdin, env={**os.environ, "PYTHONWARNINGS": "error"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


def refused_soon(gateway: Gateway, secret: str) -> openai.AuthenticationError:
    """The 401 a key gets once the server saw the CLI's change (its key cache polls every 0.25 s)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            gateway.client(secret).chat.completions.create(model="echo-1", messages=MESSAGES)
        except openai.AuthenticationError as refused:
            return refused
    raise AssertionError("the key still works 5 s after the change")


def password_of(gateway: Gateway, name: str) -> str | None:
    async def work(db: Database) -> str | None:
        account = await get_account_by_name(db, name)
        assert account is not None
        return await get_password_hash(db, account.id)

    return gateway.db_run(work)  # type: ignore[no-any-return]


def test_accounts_create_prints_a_generated_password_once_and_keeps_only_its_hash(gateway: Gateway) -> None:
    made = gateway.cli("accounts", "create", "cli-acct", "--credit", "2", "--role", "admin")
    assert made.returncode == 0, made.stderr
    password = made.stdout.strip().splitlines()[-1]
    stored = password_of(gateway, "cli-acct")
    assert stored is not None and password not in stored and verify_password(password, stored)
    listed = cli_json(gateway, "accounts", "list")
    [row] = [a for a in listed if a["name"] == "cli-acct"]
    assert (row["role"], row["balance_usd"], row["status"]) == ("admin", "2.00", "active")
    assert password not in gateway.cli("accounts", "list").stdout
    again = gateway.cli("accounts", "create", "CLI-ACCT")  # names are case-insensitive
    assert again.returncode == 2 and "accounts list" in again.stderr and "Traceback" not in again.stderr


def test_accounts_create_and_passwd_read_the_password_from_stdin(gateway: Gateway) -> None:
    made = cli_json(gateway, "accounts", "create", "cli-stdin", "--password-stdin", stdin="first password\n")
    assert "password" not in made  # chosen, not generated: nothing to show
    assert verify_password("first password", password_of(gateway, "cli-stdin"))
    short = gateway.cli("accounts", "passwd", "cli-stdin", "--password-stdin")  # empty stdin: too short
    assert short.returncode == 2 and "at least 8" in short.stderr
    account_id = gateway.db_run(lambda db: get_account_by_name(db, "cli-stdin")).id
    gateway.db_run(
        lambda db: db.write(
            lambda conn: conn.execute(
                "INSERT INTO sessions (token_hash, account_id, created_at, expires_at, last_seen_at)"
                " VALUES ('cli-stdin-session', ?, 0, 9e9, 0)",
                (account_id,),
            )
        )
    )
    changed = cli_json(gateway, "accounts", "passwd", "cli-stdin")
    assert verify_password(changed["password"], password_of(gateway, "cli-stdin"))
    assert not verify_password("first password", password_of(gateway, "cli-stdin"))

    async def sessions(db: Database) -> int:
        async with db.reader.execute("SELECT COUNT(*) FROM sessions WHERE account_id = ?", (account_id,)) as cur:
            return int((await cur.fetchone())[0])

    assert gateway.db_run(sessions) == 0  # a new password ends every session


def test_keys_create_under_one_account_share_its_wallet_and_disabling_it_stops_both(gateway: Gateway) -> None:
    first = cli_json(gateway, "keys", "create", "laptop", "--account", "cli-team", "--credit", "1")
    second = cli_json(gateway, "keys", "create", "ci", "--account", "cli-team", "--spend-limit", "0.5")
    assert first["account"] == second["account"] == "cli-team" and first["id"] != second["id"]
    assert (second["spend_limit_usd"], second["spend_period"], second["balance_usd"]) == ("0.50", "total", "1.00")
    for secret in (first["key"], second["key"]):
        assert gateway.client(secret).chat.completions.create(model="echo-1", messages=MESSAGES).choices
    assert cli_json(gateway, "accounts", "disable", "cli-team")["status"] == "disabled"
    for secret in (first["key"], second["key"]):
        assert refused_soon(gateway, secret).code == "invalid_api_key"
    cli_json(gateway, "accounts", "enable", "cli-team")
    listed = [k for k in cli_json(gateway, "keys", "list", "--account", "cli-team")]
    assert sorted(k["name"] for k in listed) == ["ci", "laptop"] and {k["account"] for k in listed} == {"cli-team"}
    assert len({k["balance_nano_usd"] for k in listed}) == 1  # one wallet


def test_keys_create_without_account_makes_the_account_of_that_name(gateway: Gateway) -> None:
    made = cli_json(gateway, "keys", "create", "cli-alice", "--credit", "5", "--allow-ips", "10.0.0.0/8,::1")
    assert (made["account"], made["balance_usd"], made["allow_ips"]) == ("cli-alice", "5.00", ["10.0.0.0/8", "::1/128"])
    assert cli_json(gateway, "credit", "cli-alice", "1.5", "--note", "top-up")["balance_usd"] == "6.50"
    bad = gateway.cli("keys", "create", "cli-bad", "--allow-ips", "10.0.0.0/33")
    assert bad.returncode == 2 and "--allow-ips" in bad.stderr and "CIDR" in bad.stderr
    period = gateway.cli("keys", "create", "cli-bad", "--period", "day")
    assert period.returncode == 2 and "--spend-limit" in period.stderr
    names = [k["name"] for k in cli_json(gateway, "keys", "list")]
    assert "cli-bad" not in names  # refused before anything was written


def test_keys_revoke_names_the_account_when_several_have_that_key_name(gateway: Gateway) -> None:
    one = cli_json(gateway, "keys", "create", "shared-name", "--account", "cli-one", "--credit", "1")
    two = cli_json(gateway, "keys", "create", "shared-name", "--account", "cli-two", "--credit", "1")
    ambiguous = gateway.cli("keys", "revoke", "shared-name")
    assert ambiguous.returncode == 2 and "name the account" in ambiguous.stderr
    assert cli_json(gateway, "keys", "revoke", "shared-name", "--account", "cli-two")["account"] == "cli-two"
    refused_soon(gateway, two["key"])
    assert gateway.client(one["key"]).chat.completions.create(model="echo-1", messages=MESSAGES).choices


def test_codes_create_50_as_csv_list_disable_and_redeem_once(gateway: Gateway) -> None:
    made = gateway.cli("codes", "create", "--amount", "2.5", "--count", "50", "--note", "launch", "--csv")
    assert made.returncode == 0, made.stderr
    rows = list(csv.DictReader(io.StringIO(made.stdout)))
    assert len(rows) == 50 and len({r["code"] for r in rows}) == 50
    assert all(r["code"].startswith("tbc-") and len(r["code"]) >= 24 and r["amount_usd"] == "2.50" for r in rows)
    assert {r["note"] for r in rows} == {"launch"}
    listed = {c["id"]: c for c in cli_json(gateway, "codes", "list")}
    assert all(listed[r["id"]]["status"] == "unused" for r in rows)
    shown = gateway.cli("codes", "list").stdout
    assert not any(r["code"] in shown for r in rows)  # shown once only
    assert cli_json(gateway, "codes", "disable", rows[0]["id"])["status"] == "disabled"

    cli_json(gateway, "accounts", "create", "cli-racer-a")
    cli_json(gateway, "accounts", "create", "cli-racer-b")
    database = load_settings(gateway.config).server.database

    async def race() -> list[Any]:
        async with await Database.open(database) as one, await Database.open(database) as two:  # two writers
            a = await get_account_by_name(one, "cli-racer-a")
            b = await get_account_by_name(one, "cli-racer-b")
            assert a is not None and b is not None
            code = rows[1]["code"]
            return await asyncio.gather(
                redeem_code(one, a.id, code), redeem_code(two, b.id, code), return_exceptions=True
            )

    results = asyncio.run(race())
    assert sorted(type(r).__name__ for r in results) == ["InvalidCode", "tuple"]
    balances = {a["name"]: a["balance_usd"] for a in cli_json(gateway, "accounts", "list")}
    assert sorted([balances["cli-racer-a"], balances["cli-racer-b"]]) == ["0.00", "2.50"]
    winner = "cli-racer-a" if balances["cli-racer-a"] == "2.50" else "cli-racer-b"
    account_id = gateway.db_run(lambda db: get_account_by_name(db, winner)).id
    [row] = gateway.db_run(lambda db: list_ledger(db, account_id))
    assert (row["kind"], row["amount"], row["code"]) == ("redeem", 2_500_000_000, rows[1]["code"][:10])
    statuses = {c["id"]: c for c in cli_json(gateway, "codes", "list")}
    assert statuses[rows[1]["id"]]["status"] == "used" and statuses[rows[1]["id"]]["redeemed_by"] == winner
    used = gateway.cli("codes", "disable", rows[1]["id"])
    assert used.returncode == 2 and "redeemed" in used.stderr
