"""Random identifiers from the OS CSPRNG: key secrets, the opaque public ids of keys and codes."""

from __future__ import annotations

import secrets
import string

BASE62 = string.ascii_letters + string.digits
PUBLIC_ID_CHARS = 16  # ~95 bits: unguessable, short enough for a URL


def base62(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def public_id(prefix: str) -> str:
    """`key_` or `code_` + 16 base62 characters: what API paths name, never the secret."""
    return prefix + base62(PUBLIC_ID_CHARS)
