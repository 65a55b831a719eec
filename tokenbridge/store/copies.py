"""Copies of the database file (`tokenbridge backup`, `tokenbridge restore`) and the check of a copy.

Plain blocking functions: they run in the CLI process, never inside `serve`. The copy is SQLite's
online backup API in one step (`pages=-1`): the whole file is read inside one read transaction, so it
is one consistent snapshot, however busy the writer of another process is (in WAL mode the writer
goes on writing while the copy reads; a step-by-step copy would restart after each of its commits).
"""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path

from tokenbridge.store.db import BUSY_TIMEOUT_MS


class CopyFailed(Exception):
    """The copy could not be made or did not pass its check; the message says which and why."""


@dataclass(frozen=True, slots=True)
class CopyCheck:
    """What the check of one database file found."""

    integrity: str  # "ok", or the first problems PRAGMA integrity_check reported
    accounts: int
    mismatched: tuple[str, ...] = field(default=())  # accounts whose balance != SUM(ledger.amount)
    total_balance: int = 0  # nano-USD, every wallet
    ledger_rows: int = 0
    usage_rows: int = 0
    open_holds: int = 0  # released by the first gateway that starts on the copy (their owners are gone)

    @property
    def ok(self) -> bool:
        return self.integrity == "ok" and not self.mismatched


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def check_database(path: Path) -> CopyCheck:
    """PRAGMA integrity_check, then balance == SUM(ledger.amount) for every account, in one read."""
    try:
        with closing(_open(path)) as conn:
            conn.execute("BEGIN")  # one snapshot for every count below
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check(5)")]
            integrity = "ok" if problems == ["ok"] else "; ".join(problems)
            rows = conn.execute(
                "SELECT a.name, a.balance, COALESCE(SUM(l.amount), 0) FROM accounts a"
                " LEFT JOIN ledger l ON l.account_id = a.id GROUP BY a.id ORDER BY a.id"
            ).fetchall()
            counts = [conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in _COUNTED]
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise CopyFailed(f"{path} is not a readable tokenbridge database ({exc})") from exc
    return CopyCheck(
        integrity=integrity,
        accounts=len(rows),
        mismatched=tuple(name for name, balance, ledger in rows if balance != ledger),
        total_balance=sum(int(balance) for _, balance, _ in rows),
        ledger_rows=int(counts[0]),
        usage_rows=int(counts[1]),
        open_holds=int(counts[2]),
    )


_COUNTED = ("ledger", "usage_events", "holds")


def copy_database(source: Path, target: Path, *, replace: bool = False) -> CopyCheck:
    """Copy `source` (live or not) to `target` and check the copy. The copy is written next to
    `target` under a temporary name and renamed into place only once it passed its check and is on
    disk (fsync), so `target` is either untouched or the whole checked copy. `replace`: an
    existing `target` may be replaced; otherwise it is refused (CopyFailed)."""
    if not source.is_file():
        raise CopyFailed(f"there is no database at {source}")
    if target.exists() and not replace:
        raise CopyFailed(f"{target} exists already")
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        _remove(partial)
        with closing(_open(source)) as src, closing(sqlite3.connect(partial, isolation_level=None)) as dst:
            src.backup(dst, pages=-1)  # every page in one step: one read snapshot of the source
            dst.execute("PRAGMA journal_mode = DELETE")  # the copy is one self-contained file
        check = check_database(partial)
        if not check.ok:
            raise CopyFailed(f"the copy of {source} failed its check: {describe(check)}")
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        if target.exists() and not replace:  # created while we copied
            raise CopyFailed(f"{target} exists already")
        os.replace(partial, target)
        _fsync_dir(target.parent)
        return check
    except sqlite3.Error as exc:
        raise CopyFailed(f"could not copy {source} to {target} ({exc})") from exc
    except OSError as exc:
        raise CopyFailed(f"could not write {target} ({exc.strerror or exc})") from exc
    finally:
        _remove(partial)


def move_aside(database: Path, suffix: str, *, back_to: Path | None = None) -> Path | None:
    """Rename `database` and its -wal and -shm files to `<database><suffix>[-wal|-shm]` (still one
    openable database: SQLite finds a file's WAL by its name), or to `back_to` if given. A -wal or
    -shm left without its database is moved too: SQLite would replay it into whatever file next
    takes the name. None if there was nothing to move."""
    companions = [(extra, database.with_name(database.name + extra)) for extra in ("-wal", "-shm")]
    if not database.exists() and not any(path.exists() for _, path in companions):
        return None
    aside = back_to or database.with_name(database.name + suffix)
    if aside.exists():
        raise CopyFailed(f"{aside} exists already")
    for extra, companion in companions:
        if companion.exists():
            os.replace(companion, aside.with_name(aside.name + extra))
    if database.exists():
        os.replace(database, aside)
    _fsync_dir(database.parent)
    return aside


def keep_owner_and_mode(like: Path, path: Path) -> None:
    """Give `path` the permissions (and, run as root, the owner) of `like` if it exists: a restore
    run with sudo must leave a file the service's user can still write, and no more readable."""
    try:
        old = like.stat()
    except FileNotFoundError:
        return
    os.chmod(path, stat.S_IMODE(old.st_mode))
    if os.geteuid() == 0:
        os.chown(path, old.st_uid, old.st_gid)


def describe(check: CopyCheck) -> str:
    """One line for people: what was checked and what it found."""
    money = (
        f"balance == sum of ledger for all {check.accounts} accounts"
        if not check.mismatched
        else f"balance != sum of ledger for {', '.join(check.mismatched)}"
    )
    return (
        f"integrity_check {check.integrity}; {money} ({check.ledger_rows} ledger rows, "
        f"{check.usage_rows} usage rows, {check.open_holds} open holds)"
    )


def _remove(path: Path) -> None:
    for name in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal")):
        with suppress(FileNotFoundError):
            name.unlink()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
