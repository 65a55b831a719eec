"""Channel health as the breakers last saw it, so `tokenbridge channels check` can say why a channel is out."""

from __future__ import annotations

import time
from typing import Any

from tokenbridge.circuits import Transition
from tokenbridge.store.db import Database


async def upsert_channel_health(db: Database, change: Transition) -> None:
    await db.write(
        lambda conn: conn.execute(
            "INSERT INTO channel_health (channel, model, state, reason, retry_in_s, changed_at)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (channel, model) DO UPDATE SET state = excluded.state, reason = excluded.reason,"
            " retry_in_s = excluded.retry_in_s, changed_at = excluded.changed_at",
            (change.channel, change.model, change.state, change.reason, change.retry_in_s, time.time()),
        )
    )


async def list_channel_health(db: Database) -> list[dict[str, Any]]:
    async with db.reader.execute("SELECT * FROM channel_health ORDER BY channel, model") as cur:
        return [dict(row) for row in await cur.fetchall()]


async def clear_channel_health(db: Database) -> None:
    await db.write(lambda conn: conn.execute("DELETE FROM channel_health"))
