"""Keys on the account API (SPEC §9, §10): `GET/POST /api/keys`, `GET/PATCH /api/keys/{id}`,
`POST /api/keys/{id}/revoke`. A key is named in paths by its opaque public `id`, never its secret.

A member sees and makes its own account's keys; the admin all of them (`?account=` narrows), and
may make a key for any account (`account`, default: an account named as the key, made if missing,
with `credit_usd` and `group` for it: the CLI's `keys create NAME --credit USD` habit). A key's
own secret reads only that key. Writes go through store/ (the same functions the CLI uses); a key
change is pushed into this process's key cache at once, so a revoke refuses the very next request.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tokenbridge import errors
from tokenbridge.api import params
from tokenbridge.api.auth import Principal, authenticate, unknown_key
from tokenbridge.api.people import unknown_account
from tokenbridge.api.responses import by_method, json_response, listing
from tokenbridge.errors import DuplicateKey, InvalidRequest, PermissionDenied
from tokenbridge.periods import PERIODS
from tokenbridge.report import key_json
from tokenbridge.runtime import Runtime
from tokenbridge.store import accounts
from tokenbridge.store.keys import (
    KeyExists,
    KeyNotFound,
    KeyRecord,
    KeyRevoked,
    get_key_by_public_id,
    get_keys_version,
    insert_key,
    insert_key_with_account,
    list_keys,
    revoke_key,
    update_key,
)

LIMIT_FIELDS = ("models", "rpm", "tpm", "spend_limit_usd", "spend_limit_period", "allow_ips")
CREATE_FIELDS = ("name", "expires_in", *LIMIT_FIELDS)
ADMIN_CREATE_FIELDS = ("account", "credit_usd", "group")  # the admin's only: they make or fund an account
PATCH_FIELDS = ("expires_at", "status", *LIMIT_FIELDS)


def limits(body: dict[str, Any], runtime: Runtime) -> dict[str, Any]:
    """The limit fields present in `body`, as store columns (`models` apart: it is a table of its own)."""
    columns: dict[str, Any] = {}
    for field in ("rpm", "tpm"):
        if field in body:
            columns[field] = params.per_minute(body[field], field)
    if "spend_limit_usd" in body:
        columns["spend_limit"] = params.spend_limit(body["spend_limit_usd"])
    if "spend_limit_period" in body:
        columns["spend_period"] = params.one_of(body["spend_limit_period"], "spend_limit_period", PERIODS)
    if "allow_ips" in body:
        columns["allow_ips"] = params.allow_ips(body["allow_ips"])
    if "models" in body:
        columns["models"] = params.models(body["models"], runtime.settings)
    return columns


class KeysAPI:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def routes(self) -> list[BaseRoute]:
        return [
            by_method("/api/keys", get=self.list_keys, post=self.create_key),
            by_method("/api/keys/{id}", get=self.get_key, patch=self.edit_key),
            Route("/api/keys/{id}/revoke", self.revoke_key, methods=["POST"]),
        ]

    async def writer(self, request: Request) -> Principal:
        principal = await authenticate(self.runtime, request)
        principal.require_writer()
        return principal

    async def key(self, principal: Principal, key_id: str) -> KeyRecord:
        """The key `key_id` if the caller may see it; another's answers as one that does not exist."""
        key = await get_key_by_public_id(self.runtime.db, key_id)
        if key is None or not principal.owns(key):
            raise unknown_key(key_id)
        return key

    async def keys_changed(self) -> None:
        """Make this process see a key change now, not at the cache's next poll."""
        self.runtime.keys.observe(await get_keys_version(self.runtime.db))

    async def list_keys(self, request: Request) -> Response:
        principal = await authenticate(self.runtime, request)
        account_id, name = principal.account_filter(request.query_params.get("account"))
        if name is not None:
            account = await accounts.get_account_by_name(self.runtime.db, name)
            if account is None:
                raise unknown_account(name)
            account_id = account.id
        keys = await list_keys(self.runtime.db, account_id=account_id)
        return listing([key_json(k) for k in keys if principal.owns(k)])

    async def get_key(self, request: Request) -> Response:
        principal = await authenticate(self.runtime, request)
        return json_response(key_json(await self.key(principal, request.path_params["id"])))

    async def create_key(self, request: Request) -> Response:
        principal = await self.writer(request)
        allowed = (*CREATE_FIELDS, *ADMIN_CREATE_FIELDS) if principal.is_admin else CREATE_FIELDS
        body = await params.read_json(self.runtime, request, allowed)
        if "name" not in body:
            raise InvalidRequest("The name is required.", param="name")
        name = params.key_name(body["name"])
        options = limits(body, self.runtime)
        options["models"] = options.get("models", ())
        options["expires_at"] = params.expires_in(body.get("expires_in"))
        try:
            if principal.is_admin and (principal.account is None or any(f in body for f in ADMIN_CREATE_FIELDS)):
                key, secret = await self.create_for_account(body, name, options)
            else:
                assert principal.account is not None
                key, secret = await insert_key(self.runtime.db, account_id=principal.account.id, name=name, **options)
        except KeyExists as exc:
            raise DuplicateKey(f"The account has a key named '{name}' already.", param="name") from exc
        await self.keys_changed()
        return json_response({**key_json(key), "key": secret}, 201)  # the secret: shown this once

    async def create_for_account(
        self, body: dict[str, Any], name: str, options: dict[str, Any]
    ) -> tuple[KeyRecord, str]:
        """The admin's: the key under `account` (default: an account named as the key, made if missing)."""
        account = params.account_name(body.get("account", name), "account")
        credit = params.usd(body.get("credit_usd", "0"), "credit_usd")
        if credit < 0:
            raise InvalidRequest("The credit cannot be negative.", param="credit_usd")
        group = params.group(body["group"], self.runtime.settings) if "group" in body else None
        try:
            return await insert_key_with_account(
                self.runtime.db, name=name, account=account, credit=credit, group=group, **options
            )
        except accounts.BalanceOutOfRange as exc:
            raise errors.BalanceOutOfRange(f"The credit cannot be booked: {exc}.", param="credit_usd") from exc

    async def edit_key(self, request: Request) -> Response:
        principal = await self.writer(request)
        key = await self.key(principal, request.path_params["id"])
        body = await params.read_json(self.runtime, request, PATCH_FIELDS)
        columns = limits(body, self.runtime)
        models = columns.pop("models", None)
        if "expires_at" in body:
            columns["expires_at"] = params.expires_at(body["expires_at"])
        if "status" in body:
            columns["status"] = params.one_of(body["status"], "status", ("active", "disabled"))
        try:
            edited = await update_key(self.runtime.db, key.public_id, columns=columns, models=models)
        except KeyRevoked as exc:
            raise PermissionDenied("This key is revoked for good: make a new one.", param="status") from exc
        except KeyNotFound as exc:  # pragma: no cover - keys are never deleted
            raise unknown_key(key.public_id) from exc
        await self.keys_changed()
        return json_response(key_json(edited))

    async def revoke_key(self, request: Request) -> Response:
        principal = await self.writer(request)
        key = await self.key(principal, request.path_params["id"])
        revoked = await revoke_key(self.runtime.db, key.public_id)
        await self.keys_changed()
        return json_response(key_json(revoked))
