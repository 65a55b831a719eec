"""`tokenbridge accounts|keys|credit|codes`: the people, their keys, their wallets, redemption codes
(SPEC §4, §9, §10). Each command checks its arguments with the rules the HTTP API applies
(keyrules.py), prints secrets (a key, a password, codes) once, and has `--json`."""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from typing import Any

from tokenbridge import keyrules
from tokenbridge.cli_common import CliError, checked, duration, emit, parse_usd, run_db
from tokenbridge.money import clip, format_usd
from tokenbridge.passwords import generate_password, hash_password, password_problem
from tokenbridge.report import iso_time, key_json
from tokenbridge.settings import Settings
from tokenbridge.store.accounts import (
    AccountExists,
    AccountNotFound,
    AccountRecord,
    BalanceOutOfRange,
    InvalidAccountName,
    get_account_by_name,
    insert_account,
    list_accounts,
    update_account,
)
from tokenbridge.store.codes import CodeNotFound, CodeRecord, CodeUsed, create_codes, disable_code, list_codes
from tokenbridge.store.db import Database
from tokenbridge.store.keys import (
    KeyExists,
    KeyNotFound,
    KeyRecord,
    KeyRevoked,
    get_key_by_name,
    insert_key_with_account,
    list_keys,
    revoke_key,
)
from tokenbridge.store.ledger import insert_credit

# What to do next, per store error; `main` prints "tokenbridge: <error>; <advice>" and exits 2.
ADVICE: dict[type[Exception], str] = {
    KeyExists: "pick another name (see `tokenbridge keys list`)",
    KeyNotFound: "see `tokenbridge keys list` for the names",
    KeyRevoked: "make a new key with `tokenbridge keys create`",
    AccountExists: "pick another name (see `tokenbridge accounts list`)",
    AccountNotFound: "see `tokenbridge accounts list` for the names",
    InvalidAccountName: "use 1 to 64 letters, digits or ._@+- characters",
    BalanceOutOfRange: "nothing was booked: credit a smaller amount",
    CodeNotFound: "see `tokenbridge codes list` for the ids",
    CodeUsed: "a redeemed code has done its work; nothing to disable",
}


def account_json(account: AccountRecord) -> dict[str, Any]:
    return {
        "name": account.name,
        "role": account.role,
        "status": account.status,
        "group": account.group,
        "balance_usd": format_usd(account.balance),
        "balance_nano_usd": account.balance,
        "created_at": account.created_at,
    }


def code_json(code: CodeRecord) -> dict[str, Any]:
    return {
        "id": code.public_id,
        "prefix": code.prefix,
        "amount_usd": format_usd(code.amount),
        "amount_nano_usd": code.amount,
        "status": code.status,
        "expires_at": code.expires_at,
        "note": code.note,
        "created_at": code.created_at,
        "redeemed_by": code.redeemed_by,
        "redeemed_at": code.redeemed_at,
    }


def known_group(settings: Settings, group: str) -> str:
    if group not in settings.groups:
        raise CliError(f"group {group!r} is not in {settings.path.name}; known: {', '.join(settings.groups)}")
    return group


def new_password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated): one line read from stdin with --password-stdin, else a generated one."""
    if not args.password_stdin:
        return generate_password(), True
    password = sys.stdin.readline().rstrip("\r\n")
    problem = password_problem(password)
    if problem:
        raise CliError(f"the password on stdin {problem}; nothing was changed")
    return password, False


def show_password(password: str, generated: bool, as_json: bool, data: dict[str, Any], said: str) -> None:
    if as_json:
        emit({**data, **({"password": password} if generated else {})}, True)
        return
    print(said)
    if generated:
        print("Its password is shown only now; only a hash is kept:")
        print(password)


# --- accounts -------------------------------------------------------------------------------------


def cmd_accounts_create(settings: Settings, args: argparse.Namespace) -> None:
    name = checked(keyrules.account_name, args.name, f"the account name {clip(args.name)}")
    role = checked(keyrules.role, args.role, "--role")
    group = known_group(settings, args.group)
    credit = parse_usd(args.credit)
    if credit < 0:
        raise CliError("--credit cannot be negative; a correction is `tokenbridge credit NAME -USD`")
    password, generated = new_password(args)
    hashed = hash_password(password)
    account = run_db(
        settings,
        lambda db: insert_account(db, name=name, role=role, group=group, password_hash=hashed, credit=credit),
    )
    said = f"Created account {account.name!r} ({account.role}, group {account.group!r}) with ${format_usd(credit)} in its wallet."
    show_password(password, generated, args.json, account_json(account), said)


def cmd_accounts_list(settings: Settings, args: argparse.Namespace) -> None:
    accounts = [account_json(a) for a in run_db(settings, list_accounts)]
    emit(accounts, args.json, ["name", "role", "status", "group", "balance_usd"])


def cmd_accounts_status(settings: Settings, args: argparse.Namespace) -> None:
    status = "disabled" if args.accounts == "disable" else "active"
    account = run_db(settings, lambda db: update_account(db, args.name, status=status))
    said = f"Account {account.name!r} is {status}" + (
        ": its keys are refused from now on." if status == "disabled" else "."
    )
    emit(account_json(account) if args.json else said, args.json)


def cmd_accounts_passwd(settings: Settings, args: argparse.Namespace) -> None:
    password, generated = new_password(args)
    hashed = hash_password(password)
    account = run_db(settings, lambda db: update_account(db, args.name, password_hash=hashed))
    said = f"Set a new password for account {account.name!r}; its sessions have ended."
    show_password(password, generated, args.json, account_json(account), said)


# --- keys and credit ------------------------------------------------------------------------------


def spend(key: KeyRecord) -> str:
    return "" if key.spend_limit is None else f"{format_usd(key.spend_limit)}/{key.spend_period}"


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> None:
    group = None if args.group is None else known_group(settings, args.group)
    models = tuple(m.strip() for m in args.models.split(",") if m.strip()) if args.models else ()
    unknown = [m for m in models if m not in settings.routes]
    if unknown:
        raise CliError(f"no channel serves {', '.join(unknown)}; see `tokenbridge config check` for the models")
    name = checked(keyrules.key_name, args.name, f"the key name {clip(args.name)}")
    what = "--account" if args.account else f"the account name (NAME, as no --account was given) {clip(name)}"
    account = checked(keyrules.account_name, args.account or name, what)
    options: dict[str, Any] = {
        "models": models,
        "expires_at": checked(keyrules.expires_in, args.expires_in, "--expires-in") if args.expires_in else None,
        "rpm": None if args.rpm is None else checked(keyrules.per_minute, args.rpm, "--rpm"),
        "tpm": None if args.tpm is None else checked(keyrules.per_minute, args.tpm, "--tpm"),
        "allow_ips": checked(keyrules.allow_ips, args.allow_ips, "--allow-ips") if args.allow_ips else (),
    }
    if args.spend_limit is not None:
        options["spend_limit"] = parse_usd(args.spend_limit)
        if options["spend_limit"] < 0:
            raise CliError("--spend-limit cannot be negative; leave it out for no limit")
        options["spend_period"] = args.period or "total"
    elif args.period:
        raise CliError("--period goes with --spend-limit USD: the limit is spent over that period")
    credit = parse_usd(args.credit)
    if credit < 0:
        raise CliError("--credit cannot be negative; a correction is `tokenbridge credit ACCOUNT -USD`")

    async def work(db: Database) -> tuple[KeyRecord, str]:
        return await insert_key_with_account(db, name=name, account=account, credit=credit, group=group, **options)

    key, secret = run_db(settings, work)
    if args.json:
        emit({**key_json(key), "key": secret}, True)
        return
    print(
        f"Created key {key.name!r} in account {key.account_name!r} (group {key.group!r}, wallet"
        f" ${format_usd(key.balance)}" + (f", spend limit ${spend(key)}" if key.spend_limit is not None else "") + ")."
    )
    print("Copy the secret now: only its hash is stored, it cannot be shown again.")
    print(secret)


def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> None:
    async def work(db: Database) -> list[KeyRecord]:
        if args.account is None:
            return await list_keys(db)
        account = await get_account_by_name(db, args.account)
        if account is None:
            raise AccountNotFound(f"no account named {args.account!r}")
        return await list_keys(db, account_id=account.id)

    keys = run_db(settings, work)
    if args.json:
        emit([key_json(k) for k in keys], True)
        return
    rows = []
    for key in keys:
        row = key_json(key)
        row.update(models=",".join(row["models"]) or "*", spend=spend(key), allow_ips=",".join(key.allow_ips) or "*")
        rows.append(row)
    columns = ["name", "account", "prefix", "group", "balance_usd", "status", "expires_at", "models", "rpm", "tpm"]
    emit(rows, False, [*columns, "spend", "allow_ips"])


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> None:
    async def work(db: Database) -> KeyRecord:
        key = await get_key_by_name(db, args.name, account=args.account)
        if key is None:
            raise KeyNotFound(f"no key named {args.name!r}" + (f" in account {args.account!r}" if args.account else ""))
        return await revoke_key(db, key.public_id)

    key = run_db(settings, work)
    said = f"Revoked key {key.name!r} of account {key.account_name!r}."
    emit({"name": key.name, "account": key.account_name, "status": "revoked"} if args.json else said, args.json)


def cmd_credit(settings: Settings, args: argparse.Namespace) -> None:
    amount = parse_usd(args.usd)
    balance = run_db(settings, lambda db: insert_credit(db, args.account, amount, note=args.note))
    if args.json:
        shown = {"amount_usd": format_usd(amount), "balance_usd": format_usd(balance), "balance_nano_usd": balance}
        emit({"account": args.account, "name": args.account, **shown}, True)
        return
    sign = "+" if amount >= 0 else ""
    print(f"Account {args.account!r}: {sign}{format_usd(amount)} USD, balance {format_usd(balance)} USD.")


# --- codes ------------------------------------------------------------------------------------------

CODES_CSV = ["code", "id", "amount_usd", "expires_at", "note"]


def cmd_codes_create(settings: Settings, args: argparse.Namespace) -> None:
    amount = parse_usd(args.amount)
    if amount < 0:
        raise CliError("--amount cannot be negative")
    if not 1 <= args.count <= 10_000:
        raise CliError("--count must be from 1 to 10000; make more in several runs")
    expires = time.time() + duration(args.expires_in) if args.expires_in else None
    made = run_db(
        settings, lambda db: create_codes(db, amount=amount, count=args.count, expires_at=expires, note=args.note)
    )
    rows = [{"code": code, **code_json(record)} for record, code in made]
    if args.csv:  # for distribution: one code per row, opens in any spreadsheet
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CODES_CSV)
        for row in rows:
            writer.writerow([iso_time(row[c]) if c == "expires_at" and row[c] else row[c] for c in CODES_CSV])
        sys.stdout.write(out.getvalue())
    elif args.json:
        emit(rows, True)
    else:
        ends = f", valid until {iso_time(expires)}" if expires else ""
        print(f"Created {len(rows)} codes of ${format_usd(amount)} each{ends}. Copy them now: only hashes are kept.")
        for row in rows:
            print(row["code"])


def cmd_codes_list(settings: Settings, args: argparse.Namespace) -> None:
    rows = [code_json(c) for c in run_db(settings, list_codes)]
    columns = ["id", "prefix", "amount_usd", "status", "redeemed_by", "redeemed_at", "expires_at", "note"]
    emit(rows, args.json, columns)


def cmd_codes_disable(settings: Settings, args: argparse.Namespace) -> None:
    code = run_db(settings, lambda db: disable_code(db, args.id))
    emit(code_json(code) if args.json else f"Disabled code {code.public_id} ({code.prefix}…).", args.json)


# --- parsers ----------------------------------------------------------------------------------------


def add_password_stdin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from one line of stdin (default: generate)"
    )


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """The subcommands of this module, on the top-level parser's subparsers."""
    accounts = sub.add_parser("accounts", help="create, list, disable accounts; set passwords")
    acts = accounts.add_subparsers(dest="accounts", required=True)
    create = acts.add_parser("create", parents=[common], help="create an account (prints a generated password once)")
    create.add_argument("name")
    create.add_argument("--role", default="member", help="member (default) or admin")
    create.add_argument("--credit", default="0", help="opening credit of the wallet in USD (default 0)")
    create.add_argument("--group", default="default", help="pricing group (default: default)")
    add_password_stdin(create)
    create.set_defaults(run=cmd_accounts_create)
    acts.add_parser("list", parents=[common], help="list accounts").set_defaults(run=cmd_accounts_list)
    for verb, says in (("disable", "refuse every key of the account"), ("enable", "let its keys work again")):
        parser = acts.add_parser(verb, parents=[common], help=says)
        parser.add_argument("name")
        parser.set_defaults(run=cmd_accounts_status)
    passwd = acts.add_parser("passwd", parents=[common], help="set a new password (ends the account's sessions)")
    passwd.add_argument("name")
    add_password_stdin(passwd)
    passwd.set_defaults(run=cmd_accounts_passwd)

    keys = sub.add_parser("keys", help="create, list and revoke API keys").add_subparsers(dest="keys", required=True)
    create = keys.add_parser("create", parents=[common], help="create a key and print its secret once")
    create.add_argument("name")
    create.add_argument("--account", help="the account the key spends from (default: NAME, created if missing)")
    create.add_argument("--credit", default="0", help="credit for the account's wallet in USD (default 0)")
    create.add_argument("--group", help="pricing group of a new account (default: default); moves an existing one")
    create.add_argument("--models", help="comma-separated allowlist (default: every model)")
    create.add_argument("--expires-in", help="lifetime, like 30d or 12h (default: never)")
    create.add_argument("--rpm", type=int, help="requests per minute limit")
    create.add_argument("--tpm", type=int, help="tokens per minute limit")
    create.add_argument("--spend-limit", help="most this key may spend, in USD, per --period (default: no limit)")
    create.add_argument("--period", choices=["day", "month", "total"], help="of the spend limit, UTC (default total)")
    create.add_argument("--allow-ips", help="comma-separated CIDRs the key may be used from (default: any)")
    create.set_defaults(run=cmd_keys_create)
    listing = keys.add_parser("list", parents=[common], help="list keys with their accounts")
    listing.add_argument("--account", help="only this account's keys")
    listing.set_defaults(run=cmd_keys_list)
    revoke = keys.add_parser("revoke", parents=[common], help="revoke a key at once")
    revoke.add_argument("name")
    revoke.add_argument("--account", help="the key's account, when several accounts have a key of that name")
    revoke.set_defaults(run=cmd_keys_revoke)

    credit = sub.add_parser("credit", parents=[common], help="top up an account's wallet (negative: correction)")
    credit.add_argument("account")
    credit.add_argument("usd", help="amount in USD, like 5 or -0.25")
    credit.add_argument("--note", help="why, kept in the ledger")
    credit.set_defaults(run=cmd_credit)

    codes = sub.add_parser("codes", help="redemption codes: top-ups without a payment processor")
    verbs = codes.add_subparsers(dest="codes", required=True)
    create = verbs.add_parser("create", parents=[common], help="make codes and print them once")
    create.add_argument("--amount", required=True, help="USD each code credits, like 5 (0: an invite only)")
    create.add_argument("--count", type=int, required=True, help="how many codes (at most 10000)")
    create.add_argument("--expires-in", help="lifetime, like 30d (default: never)")
    create.add_argument("--note", help="kept with each code, like the campaign")
    create.add_argument("--csv", action="store_true", help="CSV (code, id, amount_usd, expires_at, note)")
    create.set_defaults(run=cmd_codes_create)
    verbs.add_parser("list", parents=[common], help="list codes and who redeemed them").set_defaults(run=cmd_codes_list)
    disable = verbs.add_parser("disable", parents=[common], help="disable an unused code")
    disable.add_argument("id", help="the code's id (code_…, from `codes list`)")
    disable.set_defaults(run=cmd_codes_disable)
