"""Throttling guesses (SPEC §9): after 10 failures for one name, or 30 from one address, within 15
minutes, 429 `too_many_attempts` with `Retry-After` (when the oldest failure that counts leaves the
window). Sign-in and redeem count separately (a kind prefixes what is counted), both in the
database, so every worker of `--workers N` sees the same counts.

Only failures are written; a throttled attempt is refused before any password is checked, so it
costs no hashing and adds no row (a flood cannot grow the table past the limits).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tokenbridge.autherrors import TooManyAttempts
from tokenbridge.store.db import Database
from tokenbridge.store.sessions import insert_failure, list_recent_failures

WINDOW_S = 15 * 60
MAX_PER_NAME = 10
MAX_PER_ADDRESS = 30


@dataclass(frozen=True, slots=True)
class Attempt:
    """One sign-in (kind "sign-in") or redeem ("redeem"): by whom (a name, case-folded) and from where."""

    kind: str
    name: str
    address: str

    @property
    def name_key(self) -> str:
        return f"{self.kind}:{self.name.casefold()}"

    @property
    def address_key(self) -> str:
        return f"{self.kind}:{self.address}"


async def check(db: Database, attempt: Attempt, *, now: float | None = None) -> None:
    """Refuse with 429 while either count is at its limit."""
    at = time.time() if now is None else now
    since = at - WINDOW_S
    for by, value, limit in (
        ("name", attempt.name_key, MAX_PER_NAME),
        ("address", attempt.address_key, MAX_PER_ADDRESS),
    ):
        recent = await list_recent_failures(db, by=by, value=value, since=since, limit=limit)
        if len(recent) >= limit:
            raise TooManyAttempts(attempt.kind, retry_in_s=recent[-1] + WINDOW_S - at)


async def record_failure(db: Database, attempt: Attempt) -> None:
    await insert_failure(db, name=attempt.name_key, address=attempt.address_key)
