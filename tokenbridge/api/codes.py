"""Redemption codes on the account API (SPEC §10): the admin's `POST /api/codes` (answers the codes
once: JSON with a `csv` field, or `?format=csv`), `GET /api/codes`, `POST /api/codes/{id}/disable`;
and a signed-in account's `POST /api/redeem`.

A used, disabled, expired or unknown code gets one answer (400 `invalid_code`), and failed redeems
are throttled like sign-ins (throttle.py), so codes cannot be guessed at speed.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tokenbridge import errors
from tokenbridge.api import params, throttle
from tokenbridge.api.auth import Principal, authenticate
from tokenbridge.api.people import usd_pair
from tokenbridge.api.responses import by_method, csv_response, json_response, listing
from tokenbridge.autherrors import CodeUsed, InvalidCode, UnknownCode
from tokenbridge.clientaddr import client_address
from tokenbridge.errors import InvalidRequest
from tokenbridge.money import clip, format_usd
from tokenbridge.report import csv_text, iso_time
from tokenbridge.runtime import Runtime
from tokenbridge.store import accounts, codes

CREATE_FIELDS = ("amount_usd", "count", "expires_in", "note")
CSV_COLUMNS = ("code", "id", "prefix", "amount_usd", "expires_at", "note")
MAX_CODE_CHARS = 100  # a code is 28 characters; anything much longer is not one


def code_json(code: codes.CodeRecord) -> dict[str, Any]:
    return {
        "id": code.public_id,
        "prefix": code.prefix,
        **usd_pair("amount", code.amount),
        "status": code.status,
        "expires_at": code.expires_at,
        "note": code.note,
        "created_at": code.created_at,
        "redeemed_by": code.redeemed_by,
        "redeemed_at": code.redeemed_at,
    }


def codes_csv(made: list[tuple[codes.CodeRecord, str]]) -> str:
    rows = [
        {
            "code": secret,
            "id": code.public_id,
            "prefix": code.prefix,
            "amount_usd": format_usd(code.amount),
            "expires_at": "" if code.expires_at is None else iso_time(code.expires_at),
            "note": code.note or "",
        }
        for code, secret in made
    ]
    return csv_text(rows, CSV_COLUMNS)


class CodesAPI:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def routes(self) -> list[BaseRoute]:
        return [
            by_method("/api/codes", get=self.list_codes, post=self.create_codes),
            Route("/api/codes/{id}/disable", self.disable_code, methods=["POST"]),
            Route("/api/redeem", self.redeem, methods=["POST"]),
        ]

    async def admin(self, request: Request) -> Principal:
        principal = await authenticate(self.runtime, request)
        principal.require_admin()
        principal.require_writer()
        return principal

    async def create_codes(self, request: Request) -> Response:
        await self.admin(request)
        fmt = params.choice(request.query_params, "format", ("json", "csv"), "json")
        body = await params.read_json(self.runtime, request, CREATE_FIELDS)
        if "amount_usd" not in body:
            raise InvalidRequest("The amount is required.", param="amount_usd")
        amount = params.usd(body["amount_usd"], "amount_usd")
        if amount < 0:
            raise InvalidRequest("The amount cannot be negative.", param="amount_usd")
        count = params.count(body.get("count", 1), "count", codes.MAX_CODES_AT_ONCE)
        expires_at = params.expires_in(body.get("expires_in"))
        made = await codes.create_codes(
            self.runtime.db, amount=amount, count=count, expires_at=expires_at, note=params.note(body.get("note"))
        )
        text = codes_csv(made)
        if fmt == "csv":
            return csv_response(text, filename="codes.csv", status=201)
        data = [{**code_json(code), "code": secret} for code, secret in made]  # the codes: shown this once
        return json_response({"object": "list", "data": data, "csv": text}, 201)

    async def list_codes(self, request: Request) -> Response:
        await self.admin(request)
        status = request.query_params.get("status")
        if status is not None:
            params.one_of(status, "status", ("unused", "used", "expired", "disabled"))
        found = await codes.list_codes(self.runtime.db)
        return listing([code_json(c) for c in found if status is None or c.status == status])

    async def disable_code(self, request: Request) -> Response:
        await self.admin(request)
        code_id = request.path_params["id"]
        try:
            code = await codes.disable_code(self.runtime.db, code_id)
        except codes.CodeNotFound as exc:
            raise UnknownCode(f"No code with the id {clip(code_id)}.", param="id") from exc
        except codes.CodeUsed as exc:
            raise CodeUsed("This code was redeemed already: it cannot be disabled.") from exc
        return json_response(code_json(code))

    async def redeem(self, request: Request) -> Response:
        principal = await authenticate(self.runtime, request)
        account = principal.require_account()
        body = await params.read_json(self.runtime, request, ("code",))
        code = body.get("code")
        if not isinstance(code, str) or not code or len(code) > MAX_CODE_CHARS:
            raise InvalidCode()
        address = client_address(request.scope, self.runtime.settings.accounts.trusted_proxies) or "?"
        attempt = throttle.Attempt("redeem", account.name, address)
        db = self.runtime.db
        await throttle.check(db, attempt)
        try:
            balance, amount = await codes.redeem_code(db, account.id, code)
        except codes.InvalidCode as exc:
            await throttle.record_failure(db, attempt)
            raise InvalidCode() from exc
        except accounts.BalanceOutOfRange as exc:
            raise errors.BalanceOutOfRange(f"This code cannot be booked: {exc}.", param="code") from exc
        return json_response({**usd_pair("balance", balance), **usd_pair("amount", amount)})
