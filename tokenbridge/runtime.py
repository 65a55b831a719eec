"""Runtime: what the stages share for the life of the process (config, store, upstream client,
breakers), and the config reload.

Created by create_app, filled in by the lifespan (a database and a client session need a running
event loop); each stage gets the parts it uses through its constructor, never the whole Runtime
(app.py's OPENAI_STAGES). No module globals.

Reload (SIGHUP, or a change of the file when `watch_config` is on): the new file is read and
validated off the event loop and swapped in whole; requests already running keep the settings they
started with (intake gives each request its own reference), so a stream in flight finishes on the
old channels. A bad edit is refused with the reason in the log, and the old config keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any

from tokenbridge.circuits import Transition
from tokenbridge.metrics import Metrics
from tokenbridge.purse import Purse
from tokenbridge.settings import ConfigError, Settings, load_settings
from tokenbridge.store.channels import upsert_channel_health
from tokenbridge.store.db import Database
from tokenbridge.store.keys import KeyCache, get_keys_version
from tokenbridge.store.ledger import release_dead_holds
from tokenbridge.upstream.breaker import Breakers
from tokenbridge.upstream.client import UpstreamClient

log = logging.getLogger("tokenbridge")

WATCH_INTERVAL_S = 1.0  # how often the config file's mtime is looked at
KEY_CACHE_POLL_S = 0.25  # how often the key cache asks whether a key changed (revocations count within this)
HOLD_SWEEP_S = 5.0  # how often holds of processes that are gone (a killed worker) are looked for


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings  # swapped whole on reload
        self.rng = rng or random.Random()
        self.upstream = UpstreamClient(pool_limit=settings.server.max_upstream_connections)
        self.breakers = Breakers(settings.server.breaker, on_change=self._breaker_changed, clock=clock)
        self.keys = KeyCache()
        self.metrics = Metrics()
        self.purse = Purse(self.current_db)
        self._db: Database | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reloading = asyncio.Lock()  # one reload at a time: a SIGHUP and the watcher may both fire
        self._file_stamp = self._stamp()

    @property
    def db(self) -> Database:
        assert self._db is not None, "the lifespan has not opened the database"
        return self._db

    def current_settings(self) -> Settings:
        return self.settings

    def current_db(self) -> Database:
        """For the stages, which are built before the lifespan opens the database."""
        return self.db

    async def start(self) -> None:
        server = self.settings.server
        self._db = await Database.open(server.database, log_outages=True, autocheckpoint=server.wal_autocheckpoint)
        # Before any request: what a crash left, or a killed worker this one may be replacing.
        await self._release_dead_holds()
        await self.upstream.start()
        self.keys.observe(await get_keys_version(self._db))
        await self.purse.notice_outside_changes(self._db)  # where the ledger is: what comes after counts
        self._spawn(self._watch_keys())
        self._spawn(self._sweep_holds())
        self._spawn(self.purse.return_while_idle())
        if self.settings.server.watch_config:
            self._spawn(self._watch())
        with suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no SIGHUP here
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload("SIGHUP")))

    async def close(self) -> None:
        with suppress(ValueError, RuntimeError, NotImplementedError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.upstream.close()
        if self._db is not None:
            with suppress(Exception):  # what stays is released at the next start, as after a crash
                await self.purse.return_idle(idle_s=0)
            await self._db.close()
            self._db = None
        self.metrics.close()

    async def reload(self, reason: str) -> bool:
        """Read the config file again; swap it in if valid, else keep serving the old one."""
        async with self._reloading:
            return await self._reload(reason)

    async def _reload(self, reason: str) -> bool:
        path = self.settings.path
        try:
            new = await asyncio.to_thread(load_settings, path)
        except ConfigError as exc:
            log.error("config reload (%s) refused, still serving the previous config: %s", reason, exc)
            return False
        if new.server.database != self.settings.server.database:
            log.warning("config reload (%s): server.database changed; it takes effect at the next restart", reason)
        self.settings = new
        self.breakers.settings = new.server.breaker
        self.upstream.forget_channels()
        log.info("config reloaded (%s): %d channels, %d models", reason, len(new.channels), len(new.routes))
        return True

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.settings.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            stamp = self._stamp()
            if stamp is not None and stamp != self._file_stamp:
                self._file_stamp = stamp
                await self.reload("file changed")

    async def _watch_keys(self) -> None:
        while True:
            await asyncio.sleep(KEY_CACHE_POLL_S)
            try:
                self.keys.observe(await get_keys_version(self.db))
                await self.purse.notice_outside_changes(self.db)  # a correction: chunks sized before it redraw
            except Exception:  # a locked or vanished database: keep the cache, try again next tick
                log.exception("could not check for key or balance changes")

    async def _release_dead_holds(self) -> None:
        released = await release_dead_holds(self.db)
        if released:
            log.warning("released %d hold%s of processes that are gone", released, "s" if released > 1 else "")

    async def _sweep_holds(self) -> None:
        """A worker killed while others serve on: its holds come back within HOLD_SWEEP_S."""
        while True:
            await asyncio.sleep(HOLD_SWEEP_S)
            try:
                await self._release_dead_holds()
            except Exception:  # a locked or vanished database: try again next round
                log.exception("could not look for holds of processes that are gone")

    def _breaker_changed(self, change: Transition) -> None:
        self.metrics.breaker_changed(change.channel, change.model, change.state)
        if change.state == "open":
            log.warning(
                "channel %r model %r: circuit open for %gs (%s)",
                change.channel,
                change.model,
                change.retry_in_s,
                change.reason,
            )
        else:
            log.info("channel %r model %r: circuit %s (%s)", change.channel, change.model, change.state, change.reason)
        if self._db is not None:
            self._spawn(self._store_health(change))

    async def _store_health(self, change: Transition) -> None:
        try:
            await upsert_channel_health(self.db, change)
        except Exception:  # health is a report; losing one must not touch a request
            log.exception("could not record the health of channel %r", change.channel)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` in the background for the life of the process: `close()` cancels what is left."""
        self._spawn(work)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
