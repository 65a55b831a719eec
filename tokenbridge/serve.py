"""`tokenbridge serve`: make the database ready, greet a first run, then hand over to uvicorn."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shlex
import tempfile
from pathlib import Path
from typing import IO

from tokenbridge.logs import LOG_FORMAT_ENV, configure_logging
from tokenbridge.money import format_usd
from tokenbridge.passwords import generate_password, hash_password
from tokenbridge.process import SUPERVISOR_ENV
from tokenbridge.settings import Settings
from tokenbridge.store.accounts import count_accounts, insert_account
from tokenbridge.store.channels import clear_channel_health
from tokenbridge.store.db import Database
from tokenbridge.store.keys import KeyRecord, count_keys, insert_key
from tokenbridge.wire import uvicorn_options

log = logging.getLogger("tokenbridge")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's; read by metrics.py (not imported here: see run)


def first_run(settings: Settings, host: str, port: int) -> None:
    """Before serving: migrate, and on an empty database make the account `admin` (role admin, a
    generated password) and under it the key `default` with the demo credit (SPEC §9). (Holds a
    crash left are released by each server process as it starts: runtime.py.)"""
    password = generate_password()

    async def work(db: Database) -> tuple[KeyRecord, str] | None:
        await clear_channel_health(db)  # breaker states of a previous run say nothing about this one
        if await count_keys(db) or await count_accounts(db):
            return None
        hashed = await asyncio.to_thread(hash_password, password)
        admin = await insert_account(
            db, name="admin", role="admin", password_hash=hashed, credit=settings.server.demo_credit, note="demo credit"
        )
        return await insert_key(db, account_id=admin.id, name="default")

    async def run() -> tuple[KeyRecord, str] | None:
        db = await Database.open(settings.server.database, autocheckpoint=settings.server.wal_autocheckpoint)
        try:
            return await work(db)
        finally:
            await db.close()

    created = asyncio.run(run())
    if created is None:  # the first start's secret was shown once: say how to get another (a log line: json too)
        config = shlex.quote(str(settings.path))
        hint = (
            "keys exist; lost the secret? `tokenbridge keys create NAME --credit USD --config %s` makes a new one"
            " (and `tokenbridge accounts passwd admin` sets a new password)"
        )
        log.info(hint, config)
        return
    key, secret = created
    model = next(iter(sorted(settings.routes)), "MODEL")
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    print("First run: created the account 'admin' (role admin). Its password is shown only now:")
    print(f"\n    {password}\n")
    print(
        f"and under it the key 'default', with ${format_usd(key.balance)} demo credit in the account's wallet."
        " Its secret is shown only now:"
    )
    print(f"\n    {secret}\n")
    print("Try it:")
    print(
        f"    curl http://{shown_host}:{port}/v1/chat/completions -H 'Authorization: Bearer {secret}'"
        f' -H \'Content-Type: application/json\' -d \'{{"model": "{model}", "messages": [{{"role": "user",'
        f' "content": "Hello, gateway!"}}]}}\''
    )
    print(flush=True)


class AlreadyServing(Exception):
    """Another `tokenbridge serve` uses this database."""


def lock_database(database: Path) -> IO[bytes]:
    """Hold `<database>.lock` for as long as this server runs.

    Starting releases every hold a crash left behind, which is only right if no other server is
    using the database: a second `serve` on the same file would wipe the first one's live holds
    and let its keys overspend. So the second one is refused instead.
    """
    handle = open(database.with_name(database.name + ".lock"), "ab")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise AlreadyServing(
            f"another `tokenbridge serve` is already using {database}; stop it first, or give this one"
            " another [server] database"
        ) from exc
    return handle


def run(settings: Settings, *, host: str, port: int, workers: int, log_format: str = "text") -> None:
    """Serve until stopped. uvicorn gets `log_config=None` (its loggers write through ours, in our format)
    and no access log of its own: observe.py writes one line per request instead."""
    import uvicorn

    configure_logging(log_format)
    os.environ[LOG_FORMAT_ENV] = log_format  # for the workers' own configure_logging (app_from_env)
    settings.server.database.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_database(settings.server.database)  # held while uvicorn runs (not by workers)
    try:
        first_run(settings, host, port)
    except BaseException:  # a database that cannot take writes, say: the CLI says so in one line
        lock.close()
        raise
    if workers > 1:
        os.environ["TOKENBRIDGE_CONFIG"] = str(settings.path)
        os.environ[SUPERVISOR_ENV] = str(os.getpid())  # uvicorn's supervisor runs in this process
        # Each worker's metrics go to files here and a scrape sums them all (metrics.py). A fresh
        # directory per run: counters of an earlier run must not count again. Set before any worker
        # starts, since prometheus-client reads it when a worker first imports it.
        with tempfile.TemporaryDirectory(prefix="tokenbridge-metrics-") as metrics_dir:
            os.environ[MULTIPROC_ENV] = metrics_dir
            uvicorn.run(
                "tokenbridge.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="info", log_config=None, access_log=False, **uvicorn_options(settings.server),
            )  # fmt: skip
    else:
        os.environ.pop(MULTIPROC_ENV, None)  # one process keeps its metrics in memory (read at first import)
        from tokenbridge.app import create_app

        uvicorn.run(
            create_app(settings), host=host, port=port, log_level="info", log_config=None, access_log=False,
            **uvicorn_options(settings.server),
        )  # fmt: skip
