"""Password hashes: hashlib.scrypt (in the standard library, memory-hard; SPEC §9 allows it or argon2id).

Stored as `scrypt$N$r$p$salt$hash` (salt and hash in base64), so the cost can be raised later and old
hashes still verify. Both functions are slow on purpose (about 50 ms, 16 MiB): callers off the event
loop run them in a thread. A password is never logged; a hash never leaves the store's password
functions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_PASSWORD_CHARS = 1024  # longer is not a password, and would make every try cost more
GENERATED_PASSWORD_BYTES = 18  # 24 URL-safe characters, ~144 bits


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024**2, dklen=HASH_BYTES)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches `stored` (a hash_password result); False for no hash or a malformed one."""
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def generate_password() -> str:
    """A password for an account made without one (printed once by the CLI and the first run)."""
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)


def password_problem(password: str) -> str | None:
    """Why a chosen password is refused (the end of a sentence), or None."""
    if len(password) < 8:
        return "must be at least 8 characters"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"must be at most {MAX_PASSWORD_CHARS} characters"
    return None
