"""Usage on the account API: `GET /api/usage[?format=csv]` (paged: `limit`, `offset`, and the
`total`), `/api/usage/summary`, `/api/usage/series` (a member: its account's rows; a key's secret:
that key's; the admin: all, or `?account=` / `?key=`).

Only the admin sees which channel served a row (a reseller's suppliers are its own business): for
anyone else `channel` and `upstream_model` are null, a channel's name in an error text reads "the
provider", and filtering or summing by channel is refused."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tokenbridge.api import params
from tokenbridge.api.auth import Principal, authenticate
from tokenbridge.api.people import unknown_account
from tokenbridge.api.responses import csv_response, json_response, listing
from tokenbridge.errors import PermissionDenied
from tokenbridge.report import for_holder, sum_csv, sum_json, usage_csv, usage_json
from tokenbridge.runtime import Runtime
from tokenbridge.store.accounts import get_account_by_name
from tokenbridge.store.usage import count_usage, list_usage, sum_usage, sum_usage_series

HOUR_S, DAY_S = 3600, 86400
CHANNELS_ADMIN_ONLY = "Only an admin can look at usage by channel."
SERIES_BUCKETS = {"hour": (HOUR_S, DAY_S), "day": (DAY_S, 30 * DAY_S)}  # bucket -> (seconds, default look-back)


class UsageAPI:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/usage", self.usage, methods=["GET"]),
            Route("/api/usage/summary", self.usage_summary, methods=["GET"]),
            Route("/api/usage/series", self.usage_series, methods=["GET"]),
        ]

    async def filters(self, request: Request) -> tuple[Principal, dict[str, Any]]:
        """Whose rows: the caller's own (a member's account, a key's key), or the admin's choice."""
        principal: Principal = await authenticate(self.runtime, request)
        query = request.query_params
        if not principal.is_admin and "channel" in query:
            raise PermissionDenied(CHANNELS_ADMIN_ONLY, param="channel")
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
        return principal, {
            "account_id": account_id,
            "key_id": key_id,
            "key": key,
            "model": query.get("model"),
            "channel": query.get("channel"),
        }

    async def usage(self, request: Request) -> Response:
        principal, filters = await self.filters(request)
        query = request.query_params
        fmt = params.choice(query, "format", ("json", "csv"), "json")
        limit, offset, since = params.limit(query), params.offset(query), params.since(query, None)
        db = self.runtime.db
        rows = await list_usage(db, **filters, since=since, limit=limit, offset=offset, newest_first=True)
        shown = [usage_json(row) for row in rows]
        if not principal.is_admin:
            shown = [for_holder(row) for row in shown]
        if fmt == "csv":
            return csv_response(usage_csv(shown))
        total = await count_usage(db, **filters, since=since)
        return listing(shown, total=total, offset=offset, has_more=offset + len(shown) < total)

    async def usage_summary(self, request: Request) -> Response:
        principal, filters = await self.filters(request)
        query = request.query_params
        by = params.choice(query, "by", ("model", "key", "channel", "day"), "model")
        if by == "channel" and not principal.is_admin:
            raise PermissionDenied(CHANNELS_ADMIN_ONLY, param="by")
        fmt = params.choice(query, "format", ("json", "csv"), "json")
        rows = await sum_usage(self.runtime.db, by=by, **filters, since=params.since(query, None))
        shown = [sum_json(row, by) for row in rows]
        return csv_response(sum_csv(shown, by)) if fmt == "csv" else listing(shown)

    async def usage_series(self, request: Request) -> Response:
        _, filters = await self.filters(request)
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
