"""Auth: `Authorization: Bearer sk-tb-…` (or `x-api-key: sk-tb-…`) -> SHA-256 -> the key's row -> call.key.

Keys come from the process's in-memory cache (store/keys.py's KeyCache), which drops them whenever
a key is created, revoked or edited (it looks at most KEY_CACHE_POLL_S ago): a revoke from the CLI
counts within a second, on every worker. Balances are not read here: holds read the database.
What a key may do is checked here too: a model outside its allowlist is refused before any money
is held for it. Error messages never echo what the caller sent.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from tokenbridge.asgi import ASGIApp, Receive, Scope, Send
from tokenbridge.autherrors import IpNotAllowed
from tokenbridge.call import SCOPE_KEY, get_call
from tokenbridge.clientaddr import client_address, in_networks, networks
from tokenbridge.errors import InvalidApiKey, unknown_model
from tokenbridge.settings import Settings
from tokenbridge.store.db import Database
from tokenbridge.store.keys import KeyCache, KeyRecord, get_key_by_hash

_BEARER = b"bearer "


def bearer_token(scope: Scope) -> bytes | None:
    value: bytes
    for name, value in scope["headers"]:
        if name == b"authorization":
            if value[:7].lower() == _BEARER:
                return value[7:].strip()
            return None
    return None


def caller_token(scope: Scope) -> bytes | None:
    """The caller's key: a bearer token, else `x-api-key` (as Anthropic's clients send it)."""
    token = bearer_token(scope)
    if token:
        return token
    value: bytes
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            return value.strip()
    return None


def name_caller(scope: Scope, key: KeyRecord) -> None:
    """For a route that authenticates a key holder itself: the Call names the key, so the access line
    and the metrics say whose request it was (never the secret)."""
    call = scope.get(SCOPE_KEY)
    if call is not None:
        call.key = key


async def resolve_key(token: bytes | None, *, keys: KeyCache, db: Database) -> KeyRecord:
    """A bearer token -> its usable key, through the key cache; 401 invalid_api_key otherwise.
    (The admin API resolves key holders with it too.)"""
    if not token:
        raise InvalidApiKey(
            "You didn't provide an API key. Send it as 'Authorization: Bearer sk-tb-...'"
            " (the console makes keys: Keys, then Create)."
        )
    key_hash = hashlib.sha256(token).hexdigest()
    key = keys.get(key_hash)
    if key is None:
        seen_at = keys.version
        key = await get_key_by_hash(db, key_hash)
        if key is not None:
            keys.put(key_hash, key, seen_at=seen_at)
    if key is None:
        raise InvalidApiKey("Incorrect API key provided.")
    if key.status != "active":
        raise InvalidApiKey(
            "This API key has been revoked." if key.status == "revoked" else "This API key is disabled."
        )
    if key.account_status != "active":
        raise InvalidApiKey("The account of this API key is disabled.")
    if not key.usable_at(time.time()):
        raise InvalidApiKey("This API key has expired.")
    return key


def check_address(scope: Scope, key: KeyRecord, settings: Settings) -> None:
    """A key with an `allow_ips` list answers only to callers inside it: 403 ip_not_allowed (the
    address as the socket says, or a trusted proxy: clientaddr.py)."""
    if key.allow_ips:
        address = client_address(scope, settings.accounts.trusted_proxies)
        if not in_networks(address, networks(key.allow_ips)):
            raise IpNotAllowed()


class AuthMiddleware:
    """Writes call.key; refuses with 401 invalid_api_key."""

    def __init__(self, app: ASGIApp, *, keys: KeyCache, db: Callable[[], Database]) -> None:
        self.app = app
        self.keys = keys
        self.db = db  # the database the lifespan opened (there is none yet when the stages are built)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = await resolve_key(caller_token(scope), keys=self.keys, db=self.db())
        call = get_call(scope)
        check_address(scope, key, call.settings)
        if call.model and not key.allows(call.model):
            raise unknown_model(call.model)
        call.key = key
        await self.app(scope, receive, send)
