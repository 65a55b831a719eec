"""Accounts on the account API (SPEC §9, §10): `GET /api/me`, `GET /api/ledger`, `/api/accounts*`
(the admin's: create, edit role / status / group / password, credit) and `GET /api/pricing`.

An account is shown with its wallet twice, as every amount: `*_usd` an exact decimal string and
`*_nano_usd` an integer; `spent` is every charge ever, `held` what requests in flight reserve now.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tokenbridge import errors, keyrules
from tokenbridge.api import params
from tokenbridge.api.auth import Principal, authenticate, session_token
from tokenbridge.api.responses import by_method, json_response, listing
from tokenbridge.autherrors import AccountExists, UnknownAccount
from tokenbridge.errors import InvalidRequest, PermissionDenied
from tokenbridge.money import clip, format_usd
from tokenbridge.passwords import MAX_PASSWORD_CHARS, generate_password, hash_password, password_problem
from tokenbridge.pricing import price_list
from tokenbridge.report import iso_time, key_json
from tokenbridge.runtime import Runtime
from tokenbridge.settings import Settings
from tokenbridge.stages.auth import bearer_token
from tokenbridge.store import accounts
from tokenbridge.store.keys import get_key_by_public_id, get_keys_version
from tokenbridge.store.ledger import insert_credit

CREATE_FIELDS = ("name", "password", "role", "group", "credit_usd")
PATCH_FIELDS = ("role", "status", "group", "password")
STATUSES = ("active", "disabled")
MAX_LEDGER_ROWS = 1000


def usd_pair(name: str, nano: int) -> dict[str, Any]:
    return {f"{name}_usd": format_usd(nano), f"{name}_nano_usd": nano}


def account_json(
    account: accounts.AccountRecord, *, spent: int | None = None, held: int | None = None
) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "name": account.name,
        "role": account.role,
        "status": account.status,
        "group": account.group,
        **usd_pair("balance", account.balance),
        "created_at": account.created_at,
    }
    if spent is not None and held is not None:
        shown |= usd_pair("spent", spent) | usd_pair("held", held)
    return shown


def ledger_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        **usd_pair("amount", row["amount"]),
        "request_id": row["request_id"],
        "key": row["key"],
        "code": row["code"],
        "note": row["note"],
        "time": iso_time(row["created_at"]),
        "created_at": row["created_at"],
    }


def unknown_account(name: str) -> UnknownAccount:
    return UnknownAccount(f"No account named {clip(name)}.", param="name")


def new_password(body: dict[str, Any]) -> str | None:
    """The body's `password` (None: none given; `null` is no password and refused)."""
    if "password" not in body:
        return None
    value = body["password"]
    if not isinstance(value, str) or (problem := password_problem(value)) is not None:
        reason = "must be text" if not isinstance(value, str) else problem
        raise InvalidRequest(f"The password {reason} (at most {MAX_PASSWORD_CHARS} characters).", param="password")
    return value


class PeopleAPI:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._prices: dict[str, tuple[Settings, bytes]] = {}  # group -> (the settings, the answer's body)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/me", self.me, methods=["GET"]),
            Route("/api/ledger", self.ledger, methods=["GET"]),
            by_method("/api/accounts", get=self.list_accounts, post=self.create_account),
            by_method("/api/accounts/{name}", get=self.get_account, patch=self.edit_account),
            Route("/api/accounts/{name}/credit", self.credit, methods=["POST"]),
            Route("/api/pricing", self.pricing, methods=["GET"]),
        ]

    async def body(self, request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
        return await params.read_json(self.runtime, request, allowed)

    async def account(self, name: str) -> accounts.AccountRecord:
        found = await accounts.get_account_by_name(self.runtime.db, name)
        if found is None:
            raise unknown_account(name)
        return found

    async def shown(self, account: accounts.AccountRecord) -> dict[str, Any]:
        spent, held = await accounts.account_spending(self.runtime.db, account.id)
        return account_json(account, spent=spent, held=held)

    async def me(self, request: Request) -> Response:
        principal = await authenticate(self.runtime, request)
        if principal.key is not None:
            key = await get_key_by_public_id(self.runtime.db, principal.key.public_id)
            assert key is not None  # keys are never deleted
            return json_response({"role": "key", "key": key_json(key)})
        if principal.account is None:
            return json_response({"role": "admin"})
        return json_response({"role": principal.role, "account": await self.shown(principal.account)})

    async def ledger(self, request: Request) -> Response:
        principal = await authenticate(self.runtime, request)
        principal.require_writer()  # a key reads its own figures on /v1/me, not the wallet's history
        query = request.query_params
        account_id, name = principal.account_filter(query.get("account"))
        if account_id is None and name is not None:
            account_id = (await self.account(name)).id
        elif account_id is None:  # an admin naming no account: its own, if it signed in to one
            if principal.account is None:
                raise PermissionDenied("The admin token has no ledger: name an account with ?account=NAME.")
            account_id = principal.account.id
        limit = params.limit(query, default=100, most=MAX_LEDGER_ROWS)
        rows = await accounts.list_ledger(
            self.runtime.db, account_id, limit=limit + 1, before_id=params.row_id(query, "before")
        )
        more = len(rows) > limit  # one row past the page says whether there is a next one
        shown = [ledger_json(row) for row in rows[:limit]]
        total = await accounts.count_ledger(self.runtime.db, account_id)
        return listing(shown, total=total, has_more=more, next_before=shown[-1]["id"] if more else None)

    # --- the admin's -------------------------------------------------------------------------------

    async def admin(self, request: Request) -> Principal:
        principal = await authenticate(self.runtime, request)
        principal.require_admin()
        return principal

    async def list_accounts(self, request: Request) -> Response:
        await self.admin(request)
        search = request.query_params.get("search")
        found = await accounts.list_accounts(self.runtime.db, search=search or None)
        return listing([account_json(a) for a in found])

    async def get_account(self, request: Request) -> Response:
        await self.admin(request)
        return json_response(await self.shown(await self.account(request.path_params["name"])))

    async def create_account(self, request: Request) -> Response:
        await self.admin(request)
        body = await self.body(request, CREATE_FIELDS)
        name = params.account_name(body.get("name"))
        role = params.one_of(body.get("role", "member"), "role", keyrules.ROLES)
        group = params.group(body.get("group", "default"), self.runtime.settings)
        credit = params.usd(body.get("credit_usd", "0"), "credit_usd")
        if credit < 0:
            raise InvalidRequest("The credit cannot be negative.", param="credit_usd")
        password = new_password(body)
        generated = password is None
        password = generate_password() if password is None else password
        password_hash = await asyncio.to_thread(hash_password, password)
        try:
            account = await accounts.insert_account(
                self.runtime.db, name=name, role=role, group=group, password_hash=password_hash, credit=credit
            )
        except accounts.AccountExists as exc:
            raise AccountExists(f"An account named {clip(name)} exists already.", param="name") from exc
        except accounts.BalanceOutOfRange as exc:
            raise errors.BalanceOutOfRange(f"The credit cannot be booked: {exc}.", param="credit_usd") from exc
        shown = await self.shown(account)
        return json_response({**shown, "password": password} if generated else shown, 201)  # shown this once

    async def edit_account(self, request: Request) -> Response:
        await self.admin(request)
        name = request.path_params["name"]
        body = await self.body(request, PATCH_FIELDS)
        changes: dict[str, Any] = {}
        if "role" in body:
            changes["role"] = params.one_of(body["role"], "role", keyrules.ROLES)
        if "status" in body:
            changes["status"] = params.one_of(body["status"], "status", STATUSES)
        if "group" in body:
            changes["group"] = params.group(body["group"], self.runtime.settings)
        if (password := new_password(body)) is not None:
            changes["password_hash"] = await asyncio.to_thread(hash_password, password)  # ends its sessions
        try:
            account = await accounts.update_account(self.runtime.db, name, **changes)
        except accounts.AccountNotFound as exc:
            raise unknown_account(name) from exc
        self.runtime.keys.observe(await get_keys_version(self.runtime.db))  # its keys: new status or group now
        return json_response(await self.shown(account))

    async def credit(self, request: Request) -> Response:
        await self.admin(request)
        name = request.path_params["name"]
        body = await self.body(request, ("amount_usd", "note"))
        if "amount_usd" not in body:
            raise InvalidRequest("The amount is required.", param="amount_usd")
        amount = params.usd(body["amount_usd"], "amount_usd")
        if amount == 0:
            raise InvalidRequest("The amount must not be zero.", param="amount_usd")
        try:
            balance = await insert_credit(self.runtime.db, name, amount, note=params.note(body.get("note")))
        except accounts.AccountNotFound as exc:
            raise unknown_account(name) from exc
        except accounts.BalanceOutOfRange as exc:
            raise errors.BalanceOutOfRange(f"The amount cannot be booked: {exc}.", param="amount_usd") from exc
        return json_response({"name": name, **usd_pair("amount", amount), **usd_pair("balance", balance)})

    # --- pricing -----------------------------------------------------------------------------------

    async def pricing(self, request: Request) -> Response:
        """Prices after the viewer's group multiplier; signed out (when `public_pricing`): the default group."""
        settings = self.runtime.settings
        signed_out = bearer_token(request.scope) is None and session_token(request) is None
        if signed_out and settings.accounts.public_pricing:
            group = "default"
        else:
            principal = await authenticate(self.runtime, request)
            viewer = principal.key or principal.account
            group = viewer.group if viewer is not None else "default"
        cached = self._prices.get(group)
        if cached is None or cached[0] is not settings:
            if len(self._prices) > len(settings.groups):  # groups a reload removed
                self._prices.clear()
            cached = self._prices[group] = (settings, orjson.dumps(price_list(settings, group)))
        return Response(cached[1], media_type="application/json", headers={"cache-control": "no-store"})
