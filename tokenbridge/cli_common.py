"""What every CLI command module shares: errors that say what to do next, argument rules, output."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson

from tokenbridge.durations import parse_duration
from tokenbridge.money import to_nano
from tokenbridge.settings import Settings
from tokenbridge.store.db import Database

T = TypeVar("T")


class CliError(Exception):
    """A usage problem; the message says what to do next."""


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def parse_usd(text: str) -> int:
    try:
        return to_nano(text)
    except ValueError as exc:
        raise CliError(f"not an amount in USD: {exc}; write it like 5 or 0.25") from exc


def checked(rule: Callable[[Any], T], value: Any, what: str) -> T:
    """A keyrules rule (the admin API applies the same ones) whose ValueError names the argument."""
    try:
        return rule(value)
    except ValueError as exc:
        raise CliError(f"{what} {exc}") from exc


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def emit(data: Any, as_json: bool, columns: Sequence[str] | None = None) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif columns is not None:
        print_table(data, columns)
    else:
        print(data)


async def with_db(settings: Settings, work: Callable[[Database], Awaitable[Any]]) -> Any:
    db = await Database.open(settings.server.database, autocheckpoint=settings.server.wal_autocheckpoint)
    try:
        return await work(db)
    finally:
        await db.close()


def run_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """`work` on the configured database, from a command (no event loop running yet)."""
    result: T = asyncio.run(with_db(settings, work))
    return result
