"""Connections to the one SQLite file: one writer thread for every change, an aiosqlite reader for lookups.

Every change is a plain function `fn(conn) -> T` handed to `Database.write(fn)`. One dedicated
thread runs them (datasette's single-writer design): it takes every change waiting in its queue and
runs the lot inside one `BEGIN IMMEDIATE … COMMIT`, each change in its own SAVEPOINT so one that
fails rolls back alone. That is group commit: under load one commit serves many requests, and a
change costs one hop to the writer thread instead of one per statement. `BEGIN IMMEDIATE` takes
SQLite's write lock for the whole batch, so a change's checks and writes are atomic against other
processes too (the CLI, other workers). A change's future resolves only after its batch committed.

WAL lets the reader (and other processes) read while the writer writes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiosqlite

from tokenbridge.process import this_process
from tokenbridge.store.migrations import apply_migrations

BUSY_TIMEOUT_MS = 5000  # another process (CLI, worker) holding the write lock is waited for this long
BEGIN_ATTEMPTS = 12  # ...this many times (a minute) before a batch fails: nothing has run yet, retrying is safe
MAX_BATCH = 256  # changes committed together at the most
_SAVEPOINT = "tokenbridge_change"  # a name no change of ours uses for its own savepoints

T = TypeVar("T")
log = logging.getLogger("tokenbridge")
Change = Callable[[sqlite3.Connection], Any]
Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]  # a change's future, its result or error


class StoreError(Exception):
    """The database cannot be used; the message says which file and why."""


class StoreUnavailable(StoreError):
    """The database cannot take a write (read-only, disk full, I/O error, locked for too long): not a
    bug of ours, and over once someone fixes the file or the disk."""

    def __init__(self, path: Path, reason: str, *, advice: str | None = None) -> None:
        self.reason = reason
        super().__init__(f"the database {path} cannot take writes ({reason}): {advice or FIX_THE_FILE}")

    @classmethod
    def of(cls, path: Path, exc: sqlite3.Error) -> StoreUnavailable:
        reason = str(exc)
        with suppress(OSError):  # a hint only: without it the advice still names a full disk
            if os.statvfs(path.parent).f_bavail == 0:  # SQLite often says only "disk I/O error"
                reason += "; its disk is full"
        return cls(path, reason)


FIX_THE_FILE = (
    "free space on its disk and make sure the file, its folder and its -wal and -shm files are writable, then try again"
)
WAL_DELETED = (
    "its -wal file was deleted while in use, so the rows written since the last checkpoint are only in this"
    " process and nothing else can open the database: stop the gateway with SIGTERM (a clean stop writes them"
    " into the database; kill -9 loses them), then start it again"
)


# SQLite's primary result codes that say the file or the disk is at fault, not the change.
_UNAVAILABLE = frozenset({
    sqlite3.SQLITE_PERM, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL,
    sqlite3.SQLITE_NOTADB,
})  # fmt: skip


def as_unavailable(path: Path, exc: BaseException) -> StoreUnavailable | None:
    """`exc` as a StoreUnavailable if it is one, or a SQLite error that means the database is at fault."""
    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _UNAVAILABLE:
        return StoreUnavailable.of(path, exc)
    return None


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the PRAGMAs every connection needs (autocommit: transactions are explicit)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class Writer:
    """The writer thread and its queue; `submit` is called from the event loop."""

    def __init__(self, path: Path, autocheckpoint: int | None = None) -> None:
        self._conn = connect(path)
        self._conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoints, no fsync per commit
        if autocheckpoint is not None:  # 0: this process never checkpoints; Litestream does (README, Litestream)
            self._conn.execute(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint)}")
        self._queue: queue.SimpleQueue[tuple[Change, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._stopped: str | None = None  # why no change is taken any more
        self.transactions = 0  # committed so far (read by the event loop for /metrics: an int, no lock needed)
        self._thread = threading.Thread(target=self._run, name="tokenbridge-writer", daemon=True)
        self._thread.start()

    def submit(self, change: Change) -> asyncio.Future[Any]:
        if self._stopped is not None:
            raise StoreError(f"the database writer is stopped ({self._stopped})")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put((change, future))
        return future

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._stopped = self._stopped or "closed"
        self._conn.close()

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # never die silently leaving callers waiting: fail them all
            self._stopped = f"{type(exc).__name__}: {exc}"
            log.exception("the database writer stopped")
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    return
                if item is not None:
                    _resolve_all([(item[1], None, StoreError(f"the database writer stopped ({self._stopped})"))])

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list[tuple[Change, asyncio.Future[Any]]]) -> None:
        conn = self._conn
        outcomes: list[Outcome] = []
        try:
            self._begin()
            for change, future in batch:
                conn.execute(f"SAVEPOINT {_SAVEPOINT}")
                try:
                    outcomes.append((future, change(conn), None))
                except Exception as exc:  # this change alone is undone and reported to its caller
                    conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
                    outcomes.append((future, None, exc))
                if not conn.in_transaction:  # a change committed on its own: the batch is no longer atomic
                    raise sqlite3.OperationalError("a change ended the batch's transaction")
                conn.execute(f"RELEASE {_SAVEPOINT}")
            conn.execute("COMMIT")
            self.transactions += 1
        except sqlite3.Error as exc:  # the batch as a whole failed (busy, disk full): every change failed
            self._rollback()
            outcomes = [(future, None, exc) for _, future in batch]
        _resolve_all(outcomes)

    def _rollback(self) -> None:
        """Undo a failed batch. On a broken disk ROLLBACK may fail too; the writer must not die of it
        (the next batch tries again), or it would refuse every change after the disk is fixed."""
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.warning("could not roll back a failed batch; the next one retries")

    def _begin(self) -> None:
        """BEGIN IMMEDIATE, waiting out another process's write lock for up to a minute (safe: nothing ran)."""
        self._rollback()  # one a failed ROLLBACK left open
        for attempt in range(BEGIN_ATTEMPTS):
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if attempt == BEGIN_ATTEMPTS - 1:
                    raise
                log.warning("the database is locked by another process; waiting")


def _resolve_all(outcomes: list[Outcome]) -> None:
    """Hand a batch's outcomes to their event loops, waking each loop once, not once per change.
    A loop that is gone has nobody waiting."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for loop, mine in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_futures, mine)
        except RuntimeError:
            pass


def _settle_futures(outcomes: list[Outcome]) -> None:
    """Settle each future on its own: one that refuses its outcome must not leave the rest waiting."""
    for future, result, error in outcomes:
        if future.done():
            continue
        try:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        except (TypeError, asyncio.InvalidStateError) as exc:  # e.g. a change raised StopIteration
            future.set_exception(StoreError(f"a database change ended with an unusable outcome: {exc}"))


class Database:
    """Open with `await Database.open(path)`; `close()` (or `async with`) stops the writer and the reader.

    `owner` names the process whose holds this connection takes (process.py): this one, unless a
    test plays another process. `log_outages`: a server logs when the database stops and starts
    taking writes (the CLI says it in its one error line instead)."""

    def __init__(
        self, path: Path, writer: Writer, reader: aiosqlite.Connection, *, owner: str, log_outages: bool = False
    ) -> None:
        self.path = path
        self.reader = reader
        self.owner = owner
        self._writer = writer
        self._log_outages = log_outages
        self._unavailable = False  # the last write failed for the database's own fault
        self._wal_lost = False  # probe_write found the -wal file deleted (logged once)

    @classmethod
    async def open(
        cls, path: Path, *, owner: str | None = None, log_outages: bool = False, autocheckpoint: int | None = None
    ) -> Database:
        """`autocheckpoint`: the writer's PRAGMA wal_autocheckpoint (None: SQLite's default, 1000 pages)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(_prepare, path)
            writer = await asyncio.to_thread(Writer, path, autocheckpoint)
        except sqlite3.Error as exc:
            raise (as_unavailable(path, exc) or StoreError(f"cannot open database {path}: {exc}")) from exc
        except OSError as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        try:
            reader = await aiosqlite.connect(path, isolation_level=None)
            reader.row_factory = aiosqlite.Row
            await reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except BaseException:
            await asyncio.to_thread(writer.close)
            raise
        return cls(path, writer, reader, owner=owner or str(this_process()), log_outages=log_outages)

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.reader.close()
        await asyncio.to_thread(self._writer.close)

    async def write(self, change: Callable[[sqlite3.Connection], T]) -> T:
        """Run `change(conn)` in the writer thread, inside a committed transaction; its result or error.

        A failure that is the database's (unwritable, full, I/O error) is a StoreUnavailable, logged
        once when it starts and once when writes work again, not once per request."""
        try:
            result: T = await self._writer.submit(change)
        except sqlite3.Error as exc:
            unavailable = as_unavailable(self.path, exc)
            if unavailable is None:
                raise
            if not self._unavailable and self._log_outages:
                log.error("%s; until then what needs a write answers 503 database_unavailable", unavailable)
            self._unavailable = True
            raise unavailable from exc
        if self._unavailable and self._log_outages:
            log.warning("the database %s takes writes again", self.path)
        self._unavailable = False
        return result

    @property
    def unavailable(self) -> bool:
        """The last write failed for the database's own fault (StoreUnavailable)."""
        return self._unavailable

    @property
    def transactions(self) -> int:
        """Write transactions this process has committed (its writer's batches)."""
        return self._writer.transactions

    async def probe_write(self) -> None:
        """A real write that changes nothing, for /readyz: one value flipped and flipped back in one
        transaction. (SQLite skips an UPDATE that sets what is there already, and writes nothing.)
        Then the -wal file must still be there: WAL mode keeps it while any connection is open."""
        wal = self.path.with_name(self.path.name + "-wal")

        def flip_twice(conn: sqlite3.Connection) -> None:
            for _ in range(2):
                conn.execute(
                    "UPDATE schema_migrations SET applied_at = -applied_at"
                    " WHERE rowid = (SELECT MIN(rowid) FROM schema_migrations)"
                )

        await self.write(flip_twice)
        if not await asyncio.to_thread(wal.exists):  # for good: only a restart makes a new one
            unavailable = StoreUnavailable(self.path, "its -wal file is gone", advice=WAL_DELETED)
            if not self._wal_lost and self._log_outages:
                log.error("%s", unavailable)
            self._wal_lost = True
            raise unavailable


def _prepare(path: Path) -> None:
    """WAL, then the migrations, on a connection of its own, before the writer starts."""
    conn = connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn)
    finally:
        conn.close()
