"""A key holder's own figures, with their own key on /v1/ (whether or not the admin API is on):

    GET /v1/me                              the key, what it has spent, and what open holds reserve
    GET /v1/dashboard/billing/subscription  OpenAI's legacy billing shape, which third-party clients
    GET /v1/dashboard/billing/usage         (ChatGPT-Next-Web, LobeChat, ...) read to show a balance

Those clients show `hard_limit_usd - total_usage / 100` as the balance (total_usage is in cents).
So, as one-api and New API do, `hard_limit_usd` is everything ever credited to the key (balance +
spent) and `total_usage` is everything ever spent, whatever dates are asked: the difference is the
balance. `daily_costs` does honour the dates: cost per UTC day and model in the range.
The figures are JSON numbers (the shape wants them); the exact integers stay on /v1/me.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tokenbridge.api.params import label
from tokenbridge.api.responses import json_response
from tokenbridge.errors import InvalidRequest
from tokenbridge.keyrules import END_OF_TIME
from tokenbridge.money import NANO_PER_USD, format_usd
from tokenbridge.report import key_json
from tokenbridge.runtime import Runtime
from tokenbridge.stages.auth import bearer_token, check_address, name_caller, resolve_key
from tokenbridge.store.keys import KeyRecord, get_key_by_public_id
from tokenbridge.store.ledger import get_key_spending
from tokenbridge.store.usage import sum_usage_series

DAY_S = 86400
NANO_PER_CENT = NANO_PER_USD // 100


def usd(nano: int) -> float:
    """nano-USD as a JSON number: true division rounds once, and repr() prints its shortest exact-enough form."""
    return nano / NANO_PER_USD


def cents(nano: int) -> float:
    return nano / NANO_PER_CENT


def utc_date(query: dict[str, str], field: str, default: float) -> float:
    """A `YYYY-MM-DD` query field as the unix time of that UTC midnight."""
    value = query.get(field)
    if value is None:
        return default
    try:
        day = dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidRequest(f"{label(field)} must be a date like 2024-05-01.", param=field) from exc
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


class SelfService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/me", self.me, methods=["GET"]),
            Route("/v1/dashboard/billing/subscription", self.subscription, methods=["GET"]),
            Route("/v1/dashboard/billing/usage", self.usage, methods=["GET"]),
        ]

    async def caller(self, request: Request) -> tuple[KeyRecord, int, int]:
        """The caller's key read fresh (cached records carry stale balances), its spend and its holds."""
        cached = await resolve_key(bearer_token(request.scope), keys=self.runtime.keys, db=self.runtime.db)
        check_address(request.scope, cached, self.runtime.settings)  # allow_ips count here too
        name_caller(request.scope, cached)
        key = await get_key_by_public_id(self.runtime.db, cached.public_id)
        assert key is not None  # keys are never deleted
        spent, held = await get_key_spending(self.runtime.db, key.id)
        return key, spent, held

    async def me(self, request: Request) -> Response:
        key, spent, held = await self.caller(request)
        return json_response({
            **key_json(key),
            "spent_usd": format_usd(spent),
            "spent_nano_usd": spent,
            "held_usd": format_usd(held),
            "held_nano_usd": held,
        })  # fmt: skip

    async def subscription(self, request: Request) -> Response:
        """`hard_limit_usd` = balance + everything spent, a JSON number.

        With /billing/usage's `total_usage` (cents), `hard_limit_usd - total_usage / 100` is the balance
        exactly in decimal arithmetic on the numbers sent: each is the shortest repr of nano / 10**k,
        which carries exactly the decimals of the nano value up to 15 significant digits (amounts under
        1,000,000 USD). In a client's float arithmetic it holds only to float precision (0.3 - 20.0/100
        is 0.09999999999999998): binary floats cannot do better, and no JSON number could fix that. The
        exact integers are on /v1/me.
        """
        key, spent, _ = await self.caller(request)
        limit = usd(key.balance + spent)
        return json_response({
            "object": "billing_subscription",
            "has_payment_method": True,
            "soft_limit_usd": limit,
            "hard_limit_usd": limit,
            "system_hard_limit_usd": limit,
            "access_until": int(min(key.expires_at or 0, END_OF_TIME)),  # an older far expiry: still an int64
        })  # fmt: skip

    async def usage(self, request: Request) -> Response:
        key, spent, _ = await self.caller(request)
        query = dict(request.query_params)
        until = utc_date(query, "end_date", (dt.datetime.now(dt.UTC).timestamp() // DAY_S + 1) * DAY_S)
        since = utc_date(query, "start_date", key.created_at // DAY_S * DAY_S)
        rows = await sum_usage_series(
            self.runtime.db, bucket_s=DAY_S, by="model", since=since, until=until, key_id=key.id
        )
        days: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            days.setdefault(row["t"], []).append({"name": row["model"], "cost": cents(row["cost"] or 0)})
        daily = [{"timestamp": t, "line_items": items} for t, items in days.items()]
        return json_response({"object": "list", "daily_costs": daily, "total_usage": cents(spent)})
