"""The admin HTTP API under /api/: keys, credits, usage rows and sums, channel health.

Not the hot path: plain Starlette endpoints, bodies parsed with orjson, GatewayErrors rendered by
intake like everywhere else. Writes go through store/ (the same functions the CLI uses); a key
change is pushed into this process's key cache at once, so a revoke refuses the very next request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tokenbridge import errors
from tokenbridge.api import params
from tokenbridge.api.auth import Principal, authenticate, unknown_key
from tokenbridge.api.openapi import openapi_endpoint
from tokenbridge.errors import DuplicateKey, InvalidRequest
from tokenbridge.money import format_usd
from tokenbridge.report import key_json, sum_csv, sum_json, usage_csv, usage_json
from tokenbridge.runtime import Runtime
from tokenbridge.stages.body import read_body
from tokenbridge.store.channels import list_channel_health
from tokenbridge.store.keys import (
    BalanceOutOfRange,
    KeyExists,
    KeyNotFound,
    KeyRecord,
    get_key_by_name,
    get_keys_version,
    insert_key,
    list_keys,
    update_key_limits,
    update_key_revoked,
)
from tokenbridge.store.ledger import insert_credit
from tokenbridge.store.usage import list_usage, sum_usage, sum_usage_series

T = TypeVar("T")
HOUR_S, DAY_S = 3600, 86400
SERIES_BUCKETS = {"hour": (HOUR_S, DAY_S), "day": (DAY_S, 30 * DAY_S)}  # bucket -> (seconds, default look-back)
CREATE_FIELDS = ("name", "credit_usd", "group", "models", "expires_in", "rpm", "tpm")
PATCH_FIELDS = ("group", "models", "expires_at", "rpm", "tpm")


def json_response(data: Any, status: int = 200) -> Response:
    # no-store: a create answer holds a secret, and every answer is one key's private data.
    return Response(orjson.dumps(data), status, media_type="application/json", headers={"cache-control": "no-store"})


def listing(data: list[Any]) -> Response:
    return json_response({"object": "list", "data": data})


Endpoint = Callable[[Request], Awaitable[Response]]


def by_method(path: str, **endpoints: Endpoint) -> Route:
    """One route for every method a path takes, so a 405's `Allow` lists them all (Starlette's comes
    from the first route whose path matches; one route per method listed only that one's)."""

    async def endpoint(request: Request) -> Response:
        method = request.method.lower()
        return await endpoints["get" if method == "head" else method](request)  # Starlette adds HEAD to GET

    return Route(path, endpoint, methods=[method.upper() for method in endpoints])


def csv_response(text: str) -> Response:
    return Response(text, media_type="text/csv", headers={"cache-control": "no-store"})


class AdminAPI:
    """The /api/* endpoints; each one starts by asking who is calling."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/openapi.json", openapi_endpoint(self.runtime.current_settings), methods=["GET"]),
            Route("/api/me", self.me, methods=["GET"]),
            by_method("/api/keys", get=self.list_keys, post=self.create_key),
            by_method("/api/keys/{name}", get=self.get_key, patch=self.edit_key),
            Route("/api/keys/{name}/revoke", self.revoke_key, methods=["POST"]),
            Route("/api/keys/{name}/credit", self.credit_key, methods=["POST"]),
            Route("/api/usage", self.usage, methods=["GET"]),
            Route("/api/usage/summary", self.usage_summary, methods=["GET"]),
            Route("/api/usage/series", self.usage_series, methods=["GET"]),
            Route("/api/channels", self.channels, methods=["GET"]),
        ]

    # --- helpers ---------------------------------------------------------------------------------

    async def caller(self, request: Request, *, write: bool = False) -> Principal:
        principal = await authenticate(self.runtime, request.scope)
        if write:
            principal.require_admin()
        return principal

    async def body(self, request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
        """The JSON body, read as the OpenAI routes read theirs (size limit, a caller that leaves)."""
        server = self.runtime.settings.server
        raw = await read_body(request.scope, request.receive, server.max_body_bytes, timeout_s=server.body_timeout_s)
        return params.json_object(raw, allowed)

    async def key(self, name: str) -> KeyRecord:
        key = await get_key_by_name(self.runtime.db, name)
        if key is None:
            raise unknown_key(name)
        return key

    async def on_key(self, name: str, change: Awaitable[T]) -> T:
        """A store change to the key `name`: no such key is a 404 `key_not_found`."""
        try:
            return await change
        except KeyNotFound as exc:
            raise unknown_key(name) from exc

    async def keys_changed(self) -> None:
        """Make this process see a key change now, not at the cache's next poll."""
        self.runtime.keys.observe(await get_keys_version(self.runtime.db))

    # --- keys --------------------------------------------------------------------------------------

    async def me(self, request: Request) -> Response:
        principal = await self.caller(request)
        if principal.key is None:
            return json_response({"role": "admin"})
        return json_response({"role": "holder", "key": key_json(await self.key(principal.key.name))})

    async def list_keys(self, request: Request) -> Response:
        principal = await self.caller(request)
        keys = await list_keys(self.runtime.db)
        return listing([key_json(k) for k in keys if principal.key is None or k.id == principal.key.id])

    async def get_key(self, request: Request) -> Response:
        principal = await self.caller(request)
        name = request.path_params["name"]
        principal.require_own(name)
        return json_response(key_json(await self.key(name)))

    async def create_key(self, request: Request) -> Response:
        await self.caller(request, write=True)
        body = await self.body(request, CREATE_FIELDS)
        settings = self.runtime.settings
        if "name" not in body:
            raise InvalidRequest("'name' is required.", param="name")
        name = params.key_name(body["name"])
        credit = params.usd(body.get("credit_usd", "0"), "credit_usd")
        if credit < 0:
            raise InvalidRequest("'credit_usd' cannot be negative.", param="credit_usd")
        group = params.group(body.get("group", "default"), settings)
        models = params.models(body.get("models", []), settings)
        expires = params.expires_in(body.get("expires_in"))
        rpm, tpm = params.per_minute(body.get("rpm"), "rpm"), params.per_minute(body.get("tpm"), "tpm")
        try:
            key, secret = await insert_key(
                self.runtime.db,
                name=name,
                credit=credit,
                group=group,
                models=models,
                expires_at=expires,
                rpm=rpm,
                tpm=tpm,
            )
        except KeyExists as exc:
            raise DuplicateKey(f"A key named '{name}' already exists.", param="name") from exc
        await self.keys_changed()
        return json_response({**key_json(key), "key": secret}, 201)

    async def edit_key(self, request: Request) -> Response:
        await self.caller(request, write=True)
        name = request.path_params["name"]
        body = await self.body(request, PATCH_FIELDS)
        settings = self.runtime.settings
        columns: dict[str, object] = {}
        if "group" in body:
            columns["group_name"] = params.group(body["group"], settings)
        if "expires_at" in body:
            columns["expires_at"] = params.expires_at(body["expires_at"])
        for field in ("rpm", "tpm"):
            if field in body:
                columns[field] = params.per_minute(body[field], field)
        models = params.models(body["models"], settings) if "models" in body else None
        await self.on_key(name, update_key_limits(self.runtime.db, name, columns=columns, models=models))
        await self.keys_changed()
        return json_response(key_json(await self.key(name)))

    async def revoke_key(self, request: Request) -> Response:
        await self.caller(request, write=True)
        name = request.path_params["name"]
        await self.on_key(name, update_key_revoked(self.runtime.db, name))
        await self.keys_changed()
        return json_response(key_json(await self.key(name)))

    async def credit_key(self, request: Request) -> Response:
        await self.caller(request, write=True)
        name = request.path_params["name"]
        body = await self.body(request, ("amount_usd", "note"))
        if "amount_usd" not in body:
            raise InvalidRequest("'amount_usd' is required.", param="amount_usd")
        amount = params.usd(body["amount_usd"], "amount_usd")
        if amount == 0:
            raise InvalidRequest("'amount_usd' must not be zero.", param="amount_usd")
        try:
            balance: int = await self.on_key(
                name, insert_credit(self.runtime.db, name, amount, note=params.note(body.get("note")))
            )
        except BalanceOutOfRange as exc:
            raise errors.BalanceOutOfRange(f"'amount_usd' cannot be booked: {exc}.", param="amount_usd") from exc
        return json_response({
            "name": name,
            "amount_usd": format_usd(amount),
            "amount_nano_usd": amount,
            "balance_usd": format_usd(balance),
            "balance_nano_usd": balance,
        })  # fmt: skip

    # --- usage -------------------------------------------------------------------------------------

    def filters(self, principal: Principal, request: Request) -> dict[str, Any]:
        query = request.query_params
        return {
            "key": principal.scope_key(query.get("key")),
            "model": query.get("model"),
            "channel": query.get("channel"),
        }

    async def usage(self, request: Request) -> Response:
        principal = await self.caller(request)
        query = request.query_params
        fmt = params.choice(query, "format", ("json", "csv"), "json")
        rows = await list_usage(
            self.runtime.db,
            **self.filters(principal, request),
            since=params.since(query, None),
            limit=params.limit(query),
            newest_first=True,
        )
        shown = [usage_json(row) for row in rows]
        return csv_response(usage_csv(shown)) if fmt == "csv" else listing(shown)

    async def usage_summary(self, request: Request) -> Response:
        principal = await self.caller(request)
        query = request.query_params
        by = params.choice(query, "by", ("model", "key", "channel", "day"), "model")
        fmt = params.choice(query, "format", ("json", "csv"), "json")
        rows = await sum_usage(
            self.runtime.db, by=by, **self.filters(principal, request), since=params.since(query, None)
        )
        shown = [sum_json(row, by) for row in rows]
        return csv_response(sum_csv(shown, by)) if fmt == "csv" else listing(shown)

    async def usage_series(self, request: Request) -> Response:
        principal = await self.caller(request)
        query = request.query_params
        bucket = params.choice(query, "bucket", tuple(SERIES_BUCKETS), "hour")
        by = params.choice(query, "by", ("model", "key"), "model")
        bucket_s, look_back_s = SERIES_BUCKETS[bucket]
        since = params.since(query, look_back_s)
        assert since is not None
        rows = await sum_usage_series(
            self.runtime.db, bucket_s=bucket_s, by=by, since=since, **self.filters(principal, request)
        )
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
        (await self.caller(request)).require_admin()
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
