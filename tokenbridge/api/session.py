"""Signing up, in and out (SPEC §9): `POST /api/register`, `POST /api/session`, `DELETE /api/session`.

A session is a random token in the `tb_session` cookie (HttpOnly, SameSite=Strict, Path=/api,
Secure when the request came over https, directly or as a trusted proxy says), stored only hashed
(store/sessions.py) and ended server-side by signing out or a password change.

An unknown name and a wrong password get one answer (401 `invalid_credentials`), and take about the
same time: an unknown name is checked against a dummy hash. Password hashing is slow on purpose and
runs in a thread, never on the event loop. Failures are throttled (throttle.py).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tokenbridge import keyrules
from tokenbridge.api import throttle
from tokenbridge.api.auth import SESSION_COOKIE, authenticate, check_origin
from tokenbridge.api.params import label, read_json
from tokenbridge.api.people import account_json
from tokenbridge.api.responses import by_method, json_response
from tokenbridge.autherrors import AccountExists, InvalidCode, InvalidCredentials, RegistrationClosed
from tokenbridge.clientaddr import client_address, over_https
from tokenbridge.errors import InvalidRequest, PermissionDenied
from tokenbridge.passwords import MAX_PASSWORD_CHARS, hash_password, password_problem, verify_password
from tokenbridge.runtime import Runtime
from tokenbridge.store import accounts, codes
from tokenbridge.store.sessions import delete_session, insert_session
from tokenbridge.store.signup import register_account

DAY_S = 86400
MAX_NAME_CHARS = 64  # an account name's most (keyrules.ACCOUNT_NAME); a longer one is no account


def field_text(body: dict[str, Any], field: str, *, most: int) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value or len(value) > most:
        raise InvalidRequest(f"{label(field)} is required: 1 to {most} characters.", param=field)
    return value


class SessionAPI:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._dummy_hash: str | None = None  # made once, on the first sign-in with an unknown name

    def routes(self) -> list[BaseRoute]:
        return [
            by_method("/api/session", post=self.sign_in, delete=self.sign_out),
            by_method("/api/register", post=self.register),
        ]

    async def body(self, request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
        check_origin(request, self.runtime, required=False)  # a sign-in from another site's page: refused
        return await read_json(self.runtime, request, allowed)

    def address(self, request: Request) -> str:
        return client_address(request.scope, self.runtime.settings.accounts.trusted_proxies) or "?"

    async def signed_in(self, request: Request, account: accounts.AccountRecord, status: int) -> Response:
        """The answer that signs `account` in: a new session, and its cookie."""
        settings = self.runtime.settings.accounts
        lifetime_s = settings.session_days * DAY_S
        token = await insert_session(self.runtime.db, account.id, lifetime_s=lifetime_s)
        cookie = f"{SESSION_COOKIE}={token}; Path=/api; Max-Age={lifetime_s}; HttpOnly; SameSite=Strict"
        if over_https(request.scope, settings.trusted_proxies):
            cookie += "; Secure"
        spent, held = await accounts.account_spending(self.runtime.db, account.id)
        answer = {"role": account.role, "account": account_json(account, spent=spent, held=held)}
        return json_response(answer, status, headers={"set-cookie": cookie})

    async def verify(self, account: accounts.AccountRecord | None, password: str) -> bool:
        if account is None:
            if self._dummy_hash is None:
                self._dummy_hash = await asyncio.to_thread(hash_password, secrets.token_urlsafe(16))
            await asyncio.to_thread(verify_password, password, self._dummy_hash)  # the same time as a real check
            return False
        stored = await accounts.get_password_hash(self.runtime.db, account.id)
        return await asyncio.to_thread(verify_password, password, stored)

    async def sign_in(self, request: Request) -> Response:
        body = await self.body(request, ("name", "password"))
        name = field_text(body, "name", most=MAX_NAME_CHARS)
        password = field_text(body, "password", most=MAX_PASSWORD_CHARS)
        attempt = throttle.Attempt("sign-in", name, self.address(request))
        db = self.runtime.db
        await throttle.check(db, attempt)
        account = await accounts.get_account_by_name(db, name)
        if not await self.verify(account, password):
            await throttle.record_failure(db, attempt)
            raise InvalidCredentials()
        assert account is not None
        if account.status != "active":
            raise PermissionDenied("This account is disabled: ask an admin.")
        return await self.signed_in(request, account, 200)

    async def sign_out(self, request: Request) -> Response:
        principal = await authenticate(self.runtime, request)
        if principal.session is None:
            raise PermissionDenied("Only a signed-in session can sign out (a Bearer token has no session).")
        await delete_session(self.runtime.db, principal.session)
        cleared = f"{SESSION_COOKIE}=; Path=/api; Max-Age=0; HttpOnly; SameSite=Strict"
        return json_response({"signed_out": True}, headers={"set-cookie": cleared})

    async def register(self, request: Request) -> Response:
        mode = self.runtime.settings.accounts.registration
        if mode == "closed":
            raise RegistrationClosed()
        body = await self.body(request, ("name", "password", "invite_code"))
        try:
            name = keyrules.account_name(body.get("name"))
        except ValueError as exc:
            raise InvalidRequest(f"The name {exc}.", param="name") from exc
        password = field_text(body, "password", most=MAX_PASSWORD_CHARS)
        if (problem := password_problem(password)) is not None:
            raise InvalidRequest(f"The password {problem}.", param="password")
        code = body.get("invite_code")
        if code is not None and not isinstance(code, str):
            raise InvalidRequest("The invite code must be text.", param="invite_code")
        if mode == "invite" and not code:
            raise InvalidCode("invite_code")
        attempt = throttle.Attempt("redeem", name, self.address(request))
        if code:
            await throttle.check(self.runtime.db, attempt)
        password_hash = await asyncio.to_thread(hash_password, password)
        try:
            account = await register_account(
                self.runtime.db,
                name=name,
                password_hash=password_hash,
                signup_credit=self.runtime.settings.accounts.signup_credit,
                invite_code=code or None,
            )
        except accounts.AccountExists as exc:
            raise AccountExists("That name is taken: choose another.", param="name") from exc
        except codes.InvalidCode as exc:
            await throttle.record_failure(self.runtime.db, attempt)
            raise InvalidCode("invite_code") from exc
        return await self.signed_in(request, account, 201)
