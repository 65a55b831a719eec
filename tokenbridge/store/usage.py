"""Usage rows: one per authenticated request, written with its charge (see ledger.settle_hold)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from tokenbridge.money import Usage
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
    caller_request_id: str | None = None  # the caller's X-Request-ID, for tracing (request_id is ours)
    cache_write_tokens: int = 0  # the part of prompt_tokens written to the provider's cache


_COLUMNS = tuple(UsageRow.__dataclass_fields__)
_VALUES = attrgetter(*_COLUMNS)  # the row's values in column order, without asdict's deep copy
INSERT_USAGE = (
    f"INSERT INTO usage_events ({', '.join(_COLUMNS)}, account_id) VALUES ({', '.join('?' for _ in _COLUMNS)}, ?)"
)


def usage_params(row: UsageRow, account_id: int) -> tuple[Any, ...]:
    """INSERT_USAGE's parameters (chunks.journal_settles inserts many at once)."""
    return (*_VALUES(row), account_id)


def insert_usage(conn: sqlite3.Connection, row: UsageRow, account_id: int) -> None:
    """Inside the caller's transaction (settle_hold), so a row and its charge land together; the
    account is the key's (read in that transaction), so a row never names another account."""
    conn.execute(INSERT_USAGE, usage_params(row, account_id))


def _filters(
    key: str | None,
    model: str | None,
    since: float | None,
    channel: str | None = None,
    until: float | None = None,
    *,
    account_id: int | None = None,
    key_id: int | None = None,
) -> tuple[str, list[Any]]:
    """`key` is a key's name (several accounts may have one of it); `key_id` and `account_id` pin one."""
    where: list[str] = []
    params: list[Any] = []
    pairs = (
        ("k.name", key),
        ("u.model", model),
        ("u.channel", channel),
        ("u.account_id", account_id),
        ("u.key_id", key_id),
    )
    for column, value in pairs:
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("u.created_at >= ?")
        params.append(since)
    if until is not None:
        where.append("u.created_at < ?")
        params.append(until)
    return (" WHERE " + " AND ".join(where) if where else ""), params


async def list_usage(
    db: Database,
    *,
    key: str | None = None,
    model: str | None = None,
    since: float | None = None,
    channel: str | None = None,
    limit: int | None = None,
    newest_first: bool = False,
    account_id: int | None = None,
    key_id: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Rows in the order they were written (a request's row is written when it ends), or newest first;
    at most `limit` of them after skipping `offset`; each with the key's name."""
    where, params = _filters(key, model, since, channel, account_id=account_id, key_id=key_id)
    order = " DESC" if newest_first else ""
    sql = f"SELECT u.*, k.name AS key FROM usage_events u JOIN api_keys k ON k.id = u.key_id{where}"
    sql += f" ORDER BY u.rowid{order}"
    if limit is not None or offset:
        sql += " LIMIT ? OFFSET ?"
        params.extend((-1 if limit is None else limit, offset))
    async with db.reader.execute(sql, params) as cur:
        return [dict(row) for row in await cur.fetchall()]


async def count_usage(db: Database, **filters: Any) -> int:
    """How many rows list_usage would give with the same filters (key, model, since, channel,
    account_id, key_id) and no limit: a listing's `total`."""
    where, params = _filters(**filters)
    sql = f"SELECT COUNT(*) FROM usage_events u JOIN api_keys k ON k.id = u.key_id{where}"
    async with db.reader.execute(sql, params) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


_GROUPS = {"model": "u.model", "key": "k.name", "channel": "u.channel", "day": "date(u.created_at, 'unixepoch')"}
# Each row counts at most Usage.MAX_TOKENS of each kind: the meter stores no more, but a row written before
# it bounded usage may hold up to 2**63 - 1, and two of those would make SQLite's SUM() raise
# "integer overflow" for every summary that covers them. Costs are money and summed exactly: each is
# at most its hold, so their sum reaches a SQLite INTEGER only past 9.2 billion USD of spend.
_SUMS = (
    f"COUNT(*) AS requests, SUM(MIN(u.prompt_tokens, {Usage.MAX_TOKENS})) AS prompt_tokens,"
    f" SUM(MIN(u.completion_tokens, {Usage.MAX_TOKENS})) AS completion_tokens,"
    f" SUM(MIN(u.cached_tokens, {Usage.MAX_TOKENS})) AS cached_tokens, SUM(u.cost) AS cost"
)


async def sum_usage(
    db: Database,
    *,
    by: str,
    key: str | None = None,
    model: str | None = None,
    since: float | None = None,
    channel: str | None = None,
    account_id: int | None = None,
    key_id: int | None = None,
) -> list[dict[str, Any]]:
    """Sums of requests, tokens and cost grouped by model, key, channel or UTC day."""
    group = _GROUPS[by]
    where, params = _filters(key, model, since, channel, account_id=account_id, key_id=key_id)
    sql = (
        f"SELECT {group} AS {by}, {_SUMS} FROM usage_events u JOIN api_keys k ON k.id = u.key_id{where}"
        f" GROUP BY {group} ORDER BY {group}"
    )
    async with db.reader.execute(sql, params) as cur:
        return [dict(row) for row in await cur.fetchall()]


async def sum_usage_series(
    db: Database,
    *,
    bucket_s: int,
    by: str,
    since: float,
    until: float | None = None,
    key: str | None = None,
    model: str | None = None,
    channel: str | None = None,
    account_id: int | None = None,
    key_id: int | None = None,
) -> list[dict[str, Any]]:
    """Sums per time bucket (`t`: the bucket's start, unix s, buckets aligned to UTC) and model or key,
    of the rows from `since` to before `until`."""
    group = _GROUPS[by]
    where, params = _filters(key, model, since, channel, until, account_id=account_id, key_id=key_id)
    sql = (
        f"SELECT CAST(u.created_at / ? AS INTEGER) * ? AS t, {group} AS {by}, {_SUMS}"
        f" FROM usage_events u JOIN api_keys k ON k.id = u.key_id{where} GROUP BY t, {group} ORDER BY t, {group}"
    )
    async with db.reader.execute(sql, [bucket_s, bucket_s, *params]) as cur:
        return [dict(row) for row in await cur.fetchall()]
