"""Runtime: what the stages share for the life of the process (config, store, upstream client).

Created by create_app, filled in by the lifespan (a database and a client session need a running
event loop), handed to stages through their constructors. No module globals.
"""

from __future__ import annotations

from tokenbridge.settings import Settings
from tokenbridge.store.db import Database
from tokenbridge.upstream.client import UpstreamClient


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings  # swapped whole on reload; a request keeps the one it started with
        self.upstream = UpstreamClient()
        self._db: Database | None = None

    @property
    def db(self) -> Database:
        assert self._db is not None, "the lifespan has not opened the database"
        return self._db

    async def start(self) -> None:
        self._db = await Database.open(self.settings.server.database)
        await self.upstream.start()

    async def close(self) -> None:
        await self.upstream.close()
        if self._db is not None:
            await self._db.close()
            self._db = None

    def current_settings(self) -> Settings:
        return self.settings
