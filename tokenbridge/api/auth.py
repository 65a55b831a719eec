"""Who is calling the account API (SPEC §9, §10): the `Principal` of a request.

    Authorization: Bearer <admin_token>   the admin (automation; `admin_token` empty: nobody is)
    Authorization: Bearer sk-tb-…         a key: read-only, and only that key's own data
    Cookie: tb_session=…                  a signed-in account: a member (its own things) or an admin

A bearer header decides alone (a wrong one is a 401 even with a good cookie beside it). Another
key's id answers 404 exactly as an id that does not exist, so nobody can probe for ids.

A write authenticated by the cookie must carry `Content-Type: application/json` and an `Origin`
equal to the gateway's own (scheme from the socket or a trusted proxy): a page of another site can
make a browser send the cookie, but not both of those. Otherwise 403 `origin_mismatch`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from starlette.requests import Request

from tokenbridge.autherrors import OriginMismatch
from tokenbridge.clientaddr import over_https, request_host
from tokenbridge.errors import InvalidApiKey, PermissionDenied, UnknownKey
from tokenbridge.money import clip
from tokenbridge.runtime import Runtime
from tokenbridge.stages.auth import bearer_token, check_address, name_caller, resolve_key
from tokenbridge.store.accounts import AccountRecord, get_account_by_id
from tokenbridge.store.keys import KeyRecord
from tokenbridge.store.sessions import get_session_account_id

SESSION_COOKIE = "tb_session"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller. `role`: "admin" (the admin token, or an admin's session), "member", or "key"."""

    role: str
    account: AccountRecord | None = None  # a session's account (the admin token has none; a key: None)
    key: KeyRecord | None = None  # a key's own secret
    session: str | None = field(default=None, repr=False)  # the cookie's token (sign-out deletes it)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def require_admin(self) -> None:
        if not self.is_admin:
            raise PermissionDenied("Only an admin may do this.")

    def require_writer(self) -> None:
        """A key's secret only reads."""
        if self.key is not None:
            raise PermissionDenied("A key's secret can only read its own data; sign in to change things.")

    def require_account(self) -> AccountRecord:
        """A signed-in account, for what only a person with a wallet does (redeem a code)."""
        self.require_writer()
        if self.account is None:
            raise PermissionDenied("Sign in to an account to do this (the admin token has no wallet).")
        return self.account

    def account_filter(self, requested: str | None) -> tuple[int | None, str | None]:
        """(account id, account name) a read is about: the admin's choice (None: all); a member's own."""
        if self.is_admin:
            return None, requested
        if self.key is not None:
            return self.key.account_id, None
        assert self.account is not None
        if requested is not None and requested.casefold() != self.account.name.casefold():
            raise PermissionDenied("A member can only read its own account.", param="account")
        return self.account.id, None

    def owns(self, key: KeyRecord) -> bool:
        """Whether this caller may see the key: the admin any, a member its account's, a key itself."""
        if self.is_admin:
            return True
        if self.key is not None:
            return key.id == self.key.id
        return self.account is not None and key.account_id == self.account.id


def unknown_key(key_id: str) -> UnknownKey:
    return UnknownKey(f"No key with the id {clip(key_id)}.", param="id")


def session_token(request: Request) -> str | None:
    """The `tb_session` cookie's value, read by hand: one malformed cookie of another app on this host
    must not hide ours (http.cookies gives up on the whole header)."""
    for part in request.headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE and value:
            return value.strip('"')
    return None


def own_origin(request: Request, runtime: Runtime) -> str:
    """The origin of this gateway's own pages, as the browser sees it (through a trusted proxy too)."""
    trusted = runtime.settings.accounts.trusted_proxies
    scheme = "https" if over_https(request.scope, trusted) else "http"
    return f"{scheme}://{request_host(request.scope, trusted)}"


def check_origin(request: Request, runtime: Runtime, *, required: bool) -> None:
    """A browser's write must come from a page of this gateway; `required` (cookie-authenticated): the
    Origin header and a JSON content type must both be there. Otherwise only an Origin that is
    present is checked (a sign-in from another site's page: refused; from a script: no Origin)."""
    origin = request.headers.get("origin")
    if origin is None and not required:
        return
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if required and content_type != "application/json":
        raise OriginMismatch("A signed-in write must be sent as application/json (from this gateway's own pages).")
    if origin != own_origin(request, runtime):
        raise OriginMismatch("This request's Origin is not this gateway: it is refused to protect your session.")


async def authenticate(runtime: Runtime, request: Request) -> Principal:
    """The caller, or 401 `invalid_api_key` (no credentials, or ones that are not valid)."""
    scope = request.scope
    token = bearer_token(scope)
    if token is not None:
        admin_token = runtime.settings.server.admin_token.encode()
        if admin_token and hmac.compare_digest(token, admin_token):
            return Principal("admin")
        key = await resolve_key(token, keys=runtime.keys, db=runtime.db)
        check_address(scope, key, runtime.settings)
        name_caller(scope, key)
        return Principal("key", key=key)
    session = session_token(request)
    if session is None:
        raise InvalidApiKey("Sign in first, or send an API key as a Bearer token.")
    account_id = await get_session_account_id(runtime.db, session)
    account = None if account_id is None else await get_account_by_id(runtime.db, account_id)
    if account is None or account.status != "active":
        raise InvalidApiKey("Your session has ended: sign in again.")
    if request.method in WRITES:
        check_origin(request, runtime, required=True)
    return Principal(account.role, account=account, session=session)
