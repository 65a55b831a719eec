"""Who is calling the admin API: the admin (`server.admin_token`) or a key holder (their own `sk-tb-` key).

The admin may do everything. A key holder may only read, and only their own key's data: another
key's name answers 404 exactly as a name that does not exist, so holders cannot probe for names.
A token that is neither is a 401 `invalid_api_key`, the same answer as on the OpenAI routes. With
`admin_token` empty no token is the admin's: the admin API is off, key holders still read their own.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from tokenbridge.asgi import Scope
from tokenbridge.errors import PermissionDenied, UnknownKey
from tokenbridge.money import clip
from tokenbridge.runtime import Runtime
from tokenbridge.stages.auth import bearer_token, name_caller, resolve_key
from tokenbridge.store.keys import KeyRecord


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: `key` is None for the admin, else the holder's own key (as auth resolved it)."""

    key: KeyRecord | None

    @property
    def role(self) -> str:
        return "admin" if self.key is None else "holder"

    def require_admin(self) -> None:
        if self.key is not None:
            raise PermissionDenied("Only the admin token may do this; a key can only read its own data.")

    def require_own(self, name: str) -> None:
        """A holder naming another key gets the answer of a key that does not exist."""
        if self.key is not None and name != self.key.name:
            raise unknown_key(name)

    def scope_key(self, requested: str | None) -> str | None:
        """The key a usage read is about: any (or all) for the admin; always the holder's own key."""
        if self.key is None:
            return requested
        if requested is not None and requested != self.key.name:
            raise PermissionDenied("A key can only read its own usage.", param="key")
        return self.key.name


def unknown_key(name: str) -> UnknownKey:
    return UnknownKey(f"No key named {clip(name)}.", param="name")


async def authenticate(runtime: Runtime, scope: Scope) -> Principal:
    token = bearer_token(scope)
    admin_token = runtime.settings.server.admin_token.encode()
    if token and admin_token and hmac.compare_digest(token, admin_token):
        return Principal(None)
    key = await resolve_key(token, keys=runtime.keys, db=runtime.db)
    name_caller(scope, key)
    return Principal(key)
