"""Usage rows: one per authenticated request, written with its charge (see ledger.settle_hold)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from tokenbridge.store.db import Database


@dataclass(frozen=True, slots=True)
class UsageRow:
    request_id: str
    created_at: float
    key_id: int
    route: str
    model: str
    channel: str | None
    upstream_model: str | None
    status: int
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost: int  # nano-USD
    usage_source: str | None
    end_reason: str
    attempts: int
    latency_ms: float
    ttfb_ms: float | None
    error: str | None


_COLUMNS = tuple(UsageRow.__dataclass_fields__)
_VALUES = attrgetter(*_COLUMNS)  # the row's values in column order, without asdict's deep copy
_INSERT = f"INSERT INTO usage_events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"


def insert_usage(conn: sqlite3.Connection, row: UsageRow) -> None:
    """Inside the caller's transaction (settle_hold), so a row and its charge land together."""
    conn.execute(_INSERT, _VALUES(row))


def _filters(key: str | None, model: str | None, since: float | None) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if key is not None:
        where.append("k.name = ?")
        params.append(key)
    if model is not None:
        where.append("u.model = ?")
        params.append(model)
    if since is not None:
        where.append("u.created_at >= ?")
        params.append(since)
    return (" WHERE " + " AND ".join(where) if where else ""), params


async def list_usage(
    db: Database, *, key: str | None = None, model: str | None = None, since: float | None = None
) -> list[dict[str, Any]]:
    """Rows oldest first, each with the key's name."""
    where, params = _filters(key, model, since)
    sql = f"SELECT u.*, k.name AS key FROM usage_events u JOIN api_keys k ON k.id = u.key_id{where} ORDER BY u.rowid"
    async with db.reader.execute(sql, params) as cur:
        return [dict(row) for row in await cur.fetchall()]


_GROUPS = {"model": "u.model", "key": "k.name", "day": "date(u.created_at, 'unixepoch')"}


async def sum_usage(
    db: Database, *, by: str, key: str | None = None, model: str | None = None, since: float | None = None
) -> list[dict[str, Any]]:
    """Sums of requests, tokens and cost grouped by model, key or UTC day."""
    group = _GROUPS[by]
    where, params = _filters(key, model, since)
    sql = (
        f"SELECT {group} AS {by}, COUNT(*) AS requests, SUM(u.prompt_tokens) AS prompt_tokens,"
        " SUM(u.completion_tokens) AS completion_tokens, SUM(u.cached_tokens) AS cached_tokens,"
        f" SUM(u.cost) AS cost FROM usage_events u JOIN api_keys k ON k.id = u.key_id{where}"
        f" GROUP BY {group} ORDER BY {group}"
    )
    async with db.reader.execute(sql, params) as cur:
        return [dict(row) for row in await cur.fetchall()]
