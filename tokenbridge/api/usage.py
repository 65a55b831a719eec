"""Usage and channels on the account API: `GET /api/usage[?format=csv]`, `/api/usage/summary`,
`/api/usage/series` (a member: its account's rows; a key's secret: that key's; the admin: all, or
`?account=` / `?key=`), and `GET /api/channels` (the admin's: channels with breaker state)."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tokenbridge.api import params
from tokenbridge.api.auth import Principal, authenticate
from tokenbridge.api.people import unknown_account
from tokenbridge.api.responses import csv_response, json_response, listing
from tokenbridge.errors import PermissionDenied
from tokenbridge.report import sum_csv, sum_json, usage_csv, usage_json
from tokenbridge.runtime import Runtime
from tokenbridge.store.accounts import get_account_by_name
from tokenbridge.store.channels import list_channel_health
from tokenbridge.store.usage import list_usage, sum_usage, sum_usage_series

HOUR_S, DAY_S = 3600, 86400
SERIES_BUCKETS = {"hour": (HOUR_S, DAY_S), "day": (DAY_S, 30 * DAY_S)}  # bucket -> (seconds, default look-back)


class UsageAPI:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/usage", self.usage, methods=["GET"]),
            Route("/api/usage/summary", self.usage_summary, methods=["GET"]),
            Route("/api/usage/series", self.usage_series, methods=["GET"]),
            Route("/api/channels", self.channels, methods=["GET"]),
        ]

    async def filters(self, request: Request) -> dict[str, Any]:
        """Whose rows: the caller's own (a member's account, a key's key), or the admin's choice."""
        principal: Principal = await authenticate(self.runtime, request)
        query = request.query_params
        account_id, name = principal.account_filter(query.get("account"))
        if name is not None:
            account = await get_account_by_name(self.runtime.db, name)
            if account is None:
                raise unknown_account(name)
            account_id = account.id
        key, key_id = query.get("key"), None
        if principal.key is not None:
            if key is not None and key != principal.key.name:
                raise PermissionDenied("A key can only read its own usage.", param="key")
            key, key_id = None, principal.key.id
        return {
            "account_id": account_id,
            "key_id": key_id,
            "key": key,
            "model": query.get("model"),
            "channel": query.get("channel"),
        }

    async def usage(self, request: Request) -> Response:
        filters = await self.filters(request)
        query = request.query_params
        fmt = params.choice(query, "format", ("json", "csv"), "json")
        rows = await list_usage(
            self.runtime.db, **filters, since=params.since(query, None), limit=params.limit(query), newest_first=True
        )
        shown = [usage_json(row) for row in rows]
        return csv_response(usage_csv(shown)) if fmt == "csv" else listing(shown)

    async def usage_summary(self, request: Request) -> Response:
        filters = await self.filters(request)
        query = request.query_params
        by = params.choice(query, "by", ("model", "key", "channel", "day"), "model")
        fmt = params.choice(query, "format", ("json", "csv"), "json")
        rows = await sum_usage(self.runtime.db, by=by, **filters, since=params.since(query, None))
        shown = [sum_json(row, by) for row in rows]
        return csv_response(sum_csv(shown, by)) if fmt == "csv" else listing(shown)

    async def usage_series(self, request: Request) -> Response:
        filters = await self.filters(request)
        query = request.query_params
        bucket = params.choice(query, "bucket", tuple(SERIES_BUCKETS), "hour")
        by = params.choice(query, "by", ("model", "key"), "model")
        bucket_s, look_back_s = SERIES_BUCKETS[bucket]
        since = params.since(query, look_back_s)
        assert since is not None
        rows = await sum_usage_series(self.runtime.db, bucket_s=bucket_s, by=by, since=since, **filters)
        fields = ("requests", "prompt_tokens", "completion_tokens", "cost_usd", "cost_nano_usd")
        data = []
        for row in rows:
            shown = sum_json(row, by)
            data.append({"t": row["t"], by: shown[by], **{f: shown[f] for f in fields}})
        return json_response({"object": "list", "bucket": bucket, "by": by, "data": data})

    # --- channels ----------------------------------------------------------------------------------

    async def channels(self, request: Request) -> Response:
        """Channels as configured, each model's circuit as this process's breakers see it now, or as the
        database last recorded it (every worker writes there, as `tokenbridge channels check` reads it)."""
        (await authenticate(self.runtime, request)).require_admin()
        health = {(h["channel"], h["model"]): h for h in await list_channel_health(self.runtime.db)}
        now = time.time()
        data = []
        for channel in self.runtime.settings.channels:
            circuits = []
            for model in channel.models:
                stored = health.get((channel.name, model))
                state = self.runtime.breakers.state(channel.name, model)
                if state == "closed" and stored:
                    state = stored["state"]
                reason, retry = "", 0.0
                if stored is not None and stored["state"] == state != "closed":
                    reason = stored["reason"]
                    retry = stored["changed_at"] + stored["retry_in_s"] - now if state == "open" else 0.0
                circuits.append(
                    {"model": model, "state": state, "reason": reason, "retry_in_s": round(max(0, retry), 3)}
                )
            data.append({
                "name": channel.name,
                "kind": channel.kind,
                "models": list(channel.models),
                "priority": channel.priority,
                "weight": channel.weight,
                "display_url": channel.display_url or None,
                "circuits": circuits,
            })  # fmt: skip
        return listing(data)
