"""Reading the account API's request bodies and query strings: every mistake is a 400
`invalid_request_error` whose `param` names the field, never a 500. Values never echo secrets (none
are taken here).

Messages are for the people the console serves, not for programmers (issue 14): a field is named
in words ("The spend limit must be more than 0"), never by its API name; `param` carries that."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson
from starlette.requests import Request

from tokenbridge import keyrules
from tokenbridge.durations import parse_duration
from tokenbridge.errors import InvalidRequest
from tokenbridge.money import clip, to_nano
from tokenbridge.runtime import Runtime
from tokenbridge.settings import Settings
from tokenbridge.stages.body import read_body

MAX_NOTE_CHARS = 500
MAX_USAGE_ROWS = 1000
_LIMIT = re.compile(r"[0-9]{1,4}")  # ASCII digits only: str.isdigit() also takes "²" and "٥"
_UNIX_S = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")
T = TypeVar("T")
# Each field as a message names it: words, never the API's field name (`param` has that).
LABELS = {
    "name": "The name", "password": "The password", "models": "The list of models", "status": "The status",
    "rpm": "The requests-per-minute limit", "tpm": "The tokens-per-minute limit", "group": "The pricing group",
    "spend_limit_usd": "The spend limit", "spend_limit_period": "The spend limit's period",
    "allow_ips": "The list of allowed IP addresses", "expires_in": "The lifetime", "expires_at": "The expiry date",
    "account": "The account", "credit_usd": "The credit", "amount_usd": "The amount", "note": "The note",
    "role": "The role", "code": "The code", "invite_code": "The invite code", "count": "The number of codes",
    "since": "The start time", "limit": "The number of rows", "offset": "The page offset", "before": "The page",
    "format": "The format", "by": "The grouping", "bucket": "The time step", "start_date": "The start date",
    "end_date": "The end date",
}  # fmt: skip


def label(field: str) -> str:
    return LABELS.get(field, "This value")


_ROW_ID = re.compile(r"[0-9]{1,18}")


async def read_json(runtime: Runtime, request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The JSON body, read as the OpenAI routes read theirs (size limit, body timeout, a caller that leaves)."""
    server = runtime.settings.server
    raw = await read_body(request.scope, request.receive, server.max_body_bytes, timeout_s=server.body_timeout_s)
    return json_object(raw, allowed)


def json_object(raw: bytes, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The body as a JSON object holding only `allowed` fields; none at all is refused (`{}` is one)."""
    if not raw:
        raise InvalidRequest("This request needs a JSON object as its body.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest("The body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    for field in body:
        if field not in allowed:
            raise InvalidRequest("This request has a field it does not take: leave it out.", param=field)
    return body


def usd(value: Any, field: str) -> int:
    """USD as a string ("2.50") or a number -> nano-USD, exactly."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidRequest(f"{label(field)} must be an amount in USD, like 2.50.", param=field)
    try:
        return to_nano(value)
    except ValueError as exc:
        raise InvalidRequest(f"{label(field)} is not a usable amount in USD: {exc}.", param=field) from exc


def key_name(value: Any) -> str:
    return checked(keyrules.key_name, value, "name")


def note(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NOTE_CHARS:
        raise InvalidRequest(f"The note must be text of at most {MAX_NOTE_CHARS} characters.", param="note")
    return value


def per_minute(value: Any, field: str) -> int | None:
    """An rpm/tpm limit: a positive integer (at most keyrules.MAX_PER_MINUTE), or null for none."""
    if value is None:
        return None
    try:
        return keyrules.per_minute(value)
    except ValueError as exc:
        raise InvalidRequest(f"{label(field)} {exc}, or empty for none.", param=field) from exc


def group(value: Any, settings: Settings) -> str:
    if not isinstance(value, str) or value not in settings.groups:
        raise InvalidRequest(
            f"Unknown pricing group {clip(value)}; the groups are: {', '.join(sorted(settings.groups))}.", param="group"
        )
    return value


def models(value: Any, settings: Settings) -> tuple[str, ...]:
    """A model allowlist ([] = every model); each must be served by some channel."""
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise InvalidRequest("The list of models must be model names (none at all allows every model).", param="models")
    for model in value:
        if model not in settings.routes:
            raise InvalidRequest(f"The model {clip(model)} is not offered here.", param="models")
    return tuple(dict.fromkeys(value))


def expires_in(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest("The lifetime must be a duration like 30d or 12h, or empty for never.", param="expires_in")
    try:
        return keyrules.expires_in(value)
    except ValueError as exc:
        raise InvalidRequest(f"The lifetime: {exc}.", param="expires_in") from exc


def expires_at(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest("The expiry date must be a time (unix seconds), or empty for never.", param="expires_at")
    try:
        return keyrules.expiry(value)
    except ValueError as exc:
        raise InvalidRequest(
            "The expiry date must be a time from 1970 to the end of 9999, or empty for never.", param="expires_at"
        ) from exc


# --- query strings --------------------------------------------------------------------------------


def choice(query: Mapping[str, str], field: str, options: tuple[str, ...], default: str) -> str:
    value = query.get(field, default)
    if value not in options:
        raise InvalidRequest(f"{label(field)} must be one of: {', '.join(options)}.", param=field)
    return value


def since(query: Mapping[str, str], default_s: float | None) -> float | None:
    """`since`: unix seconds, or a duration back from now ("24h"); absent: `default_s` back (None: all)."""
    value = query.get("since")
    now = time.time()
    if value is None:
        return None if default_s is None else now - default_s
    try:
        return float(value) if _UNIX_S.fullmatch(value) else now - parse_duration(value)
    except ValueError as exc:
        raise InvalidRequest(
            f"The start time must be unix seconds or a duration like 24h: {exc}.", param="since"
        ) from exc


def limit(query: Mapping[str, str], default: int = 100, most: int = MAX_USAGE_ROWS) -> int:
    value = query.get("limit")
    if value is None:
        return default
    if not _LIMIT.fullmatch(value) or not 1 <= int(value) <= most:
        raise InvalidRequest(f"The number of rows must be a whole number from 1 to {most}.", param="limit")
    return int(value)


def offset(query: Mapping[str, str]) -> int:
    """`offset`: rows to skip before a page (0: the first page)."""
    value = query.get("offset")
    if value is None:
        return 0
    if not _ROW_ID.fullmatch(value):
        raise InvalidRequest("The page offset must be a whole number, 0 or more.", param="offset")
    return int(value)


def row_id(query: Mapping[str, str], field: str) -> int | None:
    value = query.get(field)
    if value is None:
        return None
    if not _ROW_ID.fullmatch(value):
        raise InvalidRequest(f"{label(field)} must be a row number (a whole number, 1 or more).", param=field)
    return int(value)


# --- accounts and key limits (SPEC §9) ------------------------------------------------------------


def checked(rule: Callable[[Any], T], value: Any, field: str) -> T:
    """A keyrules check as a 400 naming the field."""
    try:
        return rule(value)
    except ValueError as exc:
        raise InvalidRequest(f"{label(field)} {exc}.", param=field) from exc


def account_name(value: Any, field: str = "name") -> str:
    return checked(keyrules.account_name, value, field)


def one_of(value: Any, field: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise InvalidRequest(f"{label(field)} must be one of: {', '.join(options)}.", param=field)
    return str(value)


def spend_limit(value: Any) -> int | None:
    """`spend_limit_usd`: a positive amount, or null for none (the wallet alone limits the key)."""
    if value is None:
        return None
    nano = usd(value, "spend_limit_usd")
    if nano <= 0:
        raise InvalidRequest("The spend limit must be more than 0, or empty for no limit.", param="spend_limit_usd")
    return nano


def allow_ips(value: Any) -> tuple[str, ...]:
    """CIDRs; [] or null: any address."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):  # not [false], not [10]
        raise InvalidRequest("The list of allowed IP addresses must be networks like 10.0.0.0/8.", param="allow_ips")
    return checked(keyrules.allow_ips, value, "allow_ips")


def count(value: Any, field: str, most: int) -> int:
    if isinstance(value, float) and value.is_integer():  # 6636.0 is an integer to JSON Schema too
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise InvalidRequest(f"{label(field)} must be a whole number from 1 to {most}.", param=field)
    return value
