"""`tokenbridge backup PATH` and `tokenbridge restore PATH`: a checked copy of the live database, and
putting one back (SPEC §14). Both run in the CLI process (store/copies.py does the blocking work);
`serve` may keep serving during a backup, and must be stopped for a restore."""

from __future__ import annotations

import argparse
import os
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from tokenbridge.cli_common import CliError, emit
from tokenbridge.serve import AlreadyServing, lock_database
from tokenbridge.settings import Settings
from tokenbridge.store.copies import (
    CopyCheck,
    CopyFailed,
    check_database,
    copy_database,
    describe,
    keep_owner_and_mode,
    move_aside,
)


def check_json(check: CopyCheck) -> dict[str, Any]:
    return {
        "integrity_check": check.integrity,
        "accounts": check.accounts,
        "balances_match_ledger": not check.mismatched,
        "mismatched_accounts": list(check.mismatched),
        "ledger_rows": check.ledger_rows,
        "usage_rows": check.usage_rows,
        "open_holds": check.open_holds,
    }


def cmd_backup(settings: Settings, args: argparse.Namespace) -> None:
    database, target = settings.server.database, Path(args.path).absolute()
    if database.exists() and target.exists() and target.samefile(database):
        raise CliError(f"{target} is the live database itself; give the backup another path")
    if target.is_dir():
        raise CliError(f"{target} is a folder; give the backup's file name, like {target / 'tokenbridge-backup.db'}")
    if not target.parent.is_dir():
        raise CliError(f"the folder {target.parent} does not exist; create it, or give another path")
    if target.exists() and not args.force:
        raise CliError(f"{target} exists already; give another path, or --force to replace it")
    if not database.exists():
        raise CliError(f"there is no database at {database} to back up; check [server] database in {settings.path}")
    try:
        check = copy_database(database, target, replace=args.force)
    except CopyFailed as exc:
        raise CliError(f"{exc}; nothing was written to {target}") from exc
    if args.json:
        emit({"backup": str(target), "database": str(database), **check_json(check)}, True)
        return
    print(f"backed up {database} to {target}")
    print(f"checked the copy: {describe(check)}")


def cmd_restore(settings: Settings, args: argparse.Namespace) -> None:
    database, source = settings.server.database, Path(args.path).absolute()
    if not source.is_file():
        raise CliError(f"there is no backup at {source}; give the path `tokenbridge backup` wrote")
    if database.exists() and source.samefile(database):
        raise CliError(f"{source} is the database itself; give the path of a backup")
    try:
        database.parent.mkdir(parents=True, exist_ok=True)  # a new machine: the folder may not be there yet
        lock = lock_database(database)  # held until the restore is done: no `serve` may start meanwhile
    except AlreadyServing as exc:
        raise CliError(
            f"a running `tokenbridge serve` uses {database} (it holds {database.name}.lock); stop it first"
            " (SIGTERM, or your service manager), then restore"
        ) from exc
    except OSError as exc:
        raise CliError(
            f"cannot use the folder {database.parent} ({exc.strerror or exc}); create it or fix its"
            " permissions, then restore"
        ) from exc
    # The whole checked copy is made beside the database before anything moves: the gap in which the
    # path holds no database is two renames, not the copy (which a Ctrl-C may interrupt).
    staged = database.with_name(f".{database.name}.restoring-{os.getpid()}")
    aside: Path | None = None
    try:
        try:
            before = check_database(source)
        except CopyFailed as exc:
            raise CliError(f"{exc}; nothing was changed") from exc
        if not before.ok:
            raise CliError(f"the backup {source} failed its check ({describe(before)}); nothing was changed")
        try:
            check = copy_database(source, staged, replace=True)
            keep_owner_and_mode(database, staged)
        except (CopyFailed, OSError) as exc:
            raise CliError(f"{exc}; nothing was changed") from exc
        try:
            aside = move_aside(database, time.strftime(".before-restore-%Y%m%dT%H%M%SZ", time.gmtime()))
        except (CopyFailed, OSError) as exc:
            raise CliError(f"could not move {database} aside ({exc}); nothing was changed") from exc
        try:
            os.replace(staged, database)
        except BaseException as exc:
            if aside is not None:
                move_aside(aside, "", back_to=database)
            if isinstance(exc, OSError):
                raise CliError(f"could not put the copy in place ({exc}); the previous database is back") from exc
            raise
    finally:
        with suppress(FileNotFoundError):
            staged.unlink()
        lock.close()
    if args.json:
        emit({"restored": str(database), "from": str(source), "previous": str(aside) if aside else None,
              **check_json(check)}, True)  # fmt: skip
        return
    print(f"restored {database} from {source}")
    print(f"checked it: {describe(check)}")
    print(f"the previous database is kept at {aside}" if aside else "there was no previous database")
    print("start `tokenbridge serve` on it; holds the copy had are released as it starts")


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    backup = sub.add_parser(
        "backup", parents=[common], help="write a checked copy of the live database (safe while serve runs)"
    )
    backup.add_argument("path", help="the copy's file (refused if it exists, unless --force)")
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    backup.set_defaults(run=cmd_backup)
    restore = sub.add_parser(
        "restore", parents=[common], help="put a backup in place of the database (serve must be stopped)"
    )
    restore.add_argument("path", help="a file `tokenbridge backup` (or `litestream restore`) wrote")
    restore.set_defaults(run=cmd_restore)
