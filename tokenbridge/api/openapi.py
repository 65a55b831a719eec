"""The OpenAPI 3.1 document of the admin API (/api/*) and the key holders' self-service routes
(/v1/me, /v1/dashboard/billing/*), served at GET /api/openapi.json without auth (it holds no data).

Written by hand, small helpers keep it short; tests/e2e/test_api_openapi.py validates it with
openapi-spec-validator and checks that it names exactly the routes the app serves, and
tests/e2e/test_api_schemathesis.py checks that the routes take exactly what it allows. The groups
and models a key may be given come from the config, so the document is made per config version.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tokenbridge.api.params import MAX_NOTE_CHARS, MAX_USAGE_ROWS
from tokenbridge.keyrules import END_OF_TIME, KEY_NAME, MAX_PER_MINUTE
from tokenbridge.settings import Settings

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str] | None = None, **properties: Schema) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def closed(schema: Schema) -> Schema:
    """A request body: a field it does not name is refused (400), so the document says so."""
    return {**schema, "additionalProperties": False}


def listing(item: Schema) -> Schema:
    return obj(["object", "data"], object={"const": "list"}, data={"type": "array", "items": item})


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
USD: Schema = {"type": "string", "description": 'exact decimal USD, like "2.50"', "examples": ["2.50"]}
NANO: Schema = {"type": "integer", "description": "nano-USD (1e-9 USD), exact"}
# As written: "2.50", "-0.25" (to_nano also reads an exponent; the document shows the plain form).
_DECIMAL = r"[0-9]{1,10}(\.[0-9]{1,9})?"
_MOST_USD = 9223372036  # a balance is a SQLite integer of nano-USD


def amount(*, negative: bool, zero: bool) -> Schema:
    """USD as a string ("2.50", exact) or a number; `negative`/`zero`: whether those are taken."""
    sign = "-?" if negative else ""
    text: Schema = {"type": "string", "pattern": f"^{sign}{_DECIMAL}$"}
    lowest = -_MOST_USD if negative else 0
    number: Schema = {"type": "number", "minimum": lowest, "maximum": _MOST_USD, "multipleOf": 1e-9}
    if not zero:
        text["not"] = {"pattern": r"^-?0+(\.0+)?$"}
        number["not"] = {"const": 0}
    return {"oneOf": [text, number], "description": 'USD as a string ("2.50", exact) or a number'}


OPT_INT: Schema = {"type": ["integer", "null"], "minimum": 1}
PER_MINUTE: Schema = {**OPT_INT, "maximum": MAX_PER_MINUTE}
UNIX: Schema = {"type": ["number", "null"], "description": "unix seconds; null = never"}

_KEY = obj(
    ["name", "prefix", "group", "balance_usd", "balance_nano_usd", "status", "expires_at", "models", "rpm", "tpm"],
    name=STR,
    prefix={"type": "string", "description": "the secret's first characters, to tell keys apart"},
    group=STR,
    balance_usd=USD,
    balance_nano_usd=NANO,
    status={"enum": ["active", "revoked", "expired"]},
    expires_at=UNIX,
    models={"type": "array", "items": STR, "description": "allowlist; [] = every model"},
    rpm=OPT_INT,
    tpm=OPT_INT,
    created_at=NUM,
)
_SUMS = {
    "requests": INT,
    "prompt_tokens": INT,
    "completion_tokens": INT,
    "cached_tokens": INT,
    "cost_usd": USD,
    "cost_nano_usd": NANO,
}
_NULL_STR: Schema = {"type": ["string", "null"]}
_USAGE_ROW = obj(
    ["request_id", "time", "key", "model", "status", "cost_usd", "cost_nano_usd"],
    request_id=STR,
    time={"type": "string", "format": "date-time"},
    created_at=NUM,
    key=STR,
    route=STR,
    model=STR,
    channel=_NULL_STR,
    upstream_model=_NULL_STR,
    status=INT,
    stream={"type": "boolean"},
    prompt_tokens=INT,
    completion_tokens=INT,
    cached_tokens=INT,
    cost_usd=USD,
    cost_nano_usd=NANO,
    usage_source=_NULL_STR,
    end_reason=STR,
    attempts=INT,
    latency_ms=NUM,
    ttfb_ms={"type": ["number", "null"]},
    error=_NULL_STR,
    caller_request_id={**_NULL_STR, "description": "the caller's own X-Request-ID, if it sent one"},
)
_SERIES_POINT = obj(
    ["t", "requests", "cost_nano_usd"],
    t={"type": "integer", "description": "the bucket's start, unix seconds (UTC-aligned)"},
    model=STR,
    key=STR,
    **{k: v for k, v in _SUMS.items() if k != "cached_tokens"},
)
_CIRCUIT = obj(
    ["model", "state", "reason", "retry_in_s"],
    model=STR,
    state={"enum": ["closed", "open", "half_open"]},
    reason=STR,
    retry_in_s={"type": "number", "description": "open: seconds until a probe is let through"},
)
_CHANNEL = obj(
    ["name", "kind", "models", "priority", "weight", "display_url", "circuits"],
    name=STR,
    kind={"enum": ["openai", "echo"]},
    models={"type": "array", "items": STR},
    priority=INT,
    weight=INT,
    display_url={"type": ["string", "null"], "description": "base URL without credentials or query"},
    circuits={"type": "array", "items": _CIRCUIT},
)
_ERROR = obj(
    ["error"],
    error=obj(["message", "type", "param", "code"], message=STR, type=STR, param=_NULL_STR, code=_NULL_STR),
)

SCHEMAS: dict[str, Schema] = {
    "Key": _KEY,
    "KeyList": listing(ref("Key")),
    "CreatedKey": {"allOf": [ref("Key"), obj(["key"], key={"type": "string", "description": "shown this once"})]},
    # CreateKey and EditKey: filled in per config by `document` (their group and model names).
    "Credit": closed(
        obj(
            ["amount_usd"],
            amount_usd=amount(negative=True, zero=False),
            note={"type": ["string", "null"], "maxLength": MAX_NOTE_CHARS},
        )
    ),
    "Credited": obj(
        ["name", "amount_usd", "amount_nano_usd", "balance_usd", "balance_nano_usd"],
        name=STR,
        amount_usd=USD,
        amount_nano_usd=NANO,
        balance_usd=USD,
        balance_nano_usd=NANO,
    ),
    "Me": obj(["role"], role={"enum": ["admin", "holder"]}, key=ref("Key")),
    "UsageList": listing(_USAGE_ROW),
    "SummaryList": listing(obj(["requests"], model=STR, key=STR, channel=_NULL_STR, day=STR, **_SUMS)),
    "Series": obj(
        ["object", "bucket", "by", "data"],
        object={"const": "list"},
        bucket={"enum": ["hour", "day"]},
        by={"enum": ["model", "key"]},
        data={"type": "array", "items": _SERIES_POINT},
    ),
    "ChannelList": listing(_CHANNEL),
    "SelfMe": {
        "allOf": [
            ref("Key"),
            obj(
                ["spent_usd", "spent_nano_usd", "held_nano_usd"], spent_usd=USD, spent_nano_usd=NANO, held_nano_usd=NANO
            ),
        ]
    },
    "BillingSubscription": obj(
        ["object", "hard_limit_usd"],
        object={"const": "billing_subscription"},
        has_payment_method={"type": "boolean"},
        soft_limit_usd=NUM,
        hard_limit_usd={"type": "number", "description": "everything ever credited: balance + total spent"},
        system_hard_limit_usd=NUM,
        access_until={"type": "integer", "description": "the key's expiry, unix seconds; 0 = never"},
    ),
    "BillingUsage": obj(
        ["object", "total_usage", "daily_costs"],
        object={"const": "list"},
        total_usage={"type": "number", "description": "cents spent over the key's life (not only the range)"},
        daily_costs={
            "type": "array",
            "items": obj(
                ["timestamp", "line_items"],
                timestamp=INT,
                line_items={"type": "array", "items": obj(["name", "cost"], name=STR, cost=NUM)},
            ),
        },
    ),
    "Error": _ERROR,
}

_ERRORS = {
    "400": "a field is wrong (`param` names it)",
    "401": "no token, or one that is neither the admin token nor a usable key",
    "403": "a key holder asking for what only the admin may (`permission_denied`)",
    "404": "no such key (`key_not_found`), also for another key's name asked by a key holder",
    "409": "a key with that name exists (`key_exists`), or a balance that cannot take a credit"
    " (`balance_out_of_range`: nothing was booked)",
}


def query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema or STR}


NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": STR}
SINCE = {"type": "string", "pattern": r"^([0-9]{1,12}(\.[0-9]{1,9})?|[0-9]{1,10}[smhd])$"}
FILTERS = [
    query("key", "only this key's rows (a key holder: only its own; another name is 403)"),
    query("model", "only this model"),
    query("channel", "only this channel"),
    query("since", "unix seconds, or a duration back from now like 24h", SINCE),
]
FORMAT = query("format", "csv for text/csv", {"enum": ["json", "csv"]})


def op(
    summary: str,
    answer: str | None,
    *,
    status: str = "200",
    errors: tuple[str, ...] = ("401",),
    body: str | None = None,
    parameters: list[Schema] | None = None,
    csv: bool = False,
    auth: bool = True,
) -> Schema:
    content: Schema = {"application/json": {"schema": ref(answer) if answer else {"type": "object"}}}
    if csv:
        content["text/csv"] = {"schema": STR}
    operation: Schema = {"summary": summary, "responses": {status: {"description": "OK", "content": content}}}
    for code in errors:
        error_content = {"application/json": {"schema": ref("Error")}}
        operation["responses"][code] = {"description": _ERRORS[code], "content": error_content}
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body)}}}
    if parameters:
        operation["parameters"] = parameters
    if not auth:
        operation["security"] = []
    return operation


WRITE = ("400", "401", "403", "404")
PATHS: dict[str, Schema] = {
    "/api/openapi.json": {"get": op("This document", None, errors=(), auth=False)},
    "/api/me": {"get": op("Who the token belongs to: the admin, or a key holder and its key", "Me")},
    "/api/keys": {
        "get": op("Keys (a key holder: only its own)", "KeyList"),
        "post": op("Create a key; the answer holds its secret, once", "CreatedKey", status="201",
                   errors=("400", "401", "403", "409"), body="CreateKey"),
    },
    "/api/keys/{name}": {
        "parameters": [NAME_PARAM],
        "get": op("One key", "Key", errors=("401", "404")),
        "patch": op("Edit a key's group, models, expiry or limits (null clears)", "Key", errors=WRITE, body="EditKey"),
    },
    "/api/keys/{name}/revoke": {
        "parameters": [NAME_PARAM],
        "post": op("Revoke a key: the next request with it is refused", "Key", errors=WRITE),
    },
    "/api/keys/{name}/credit": {
        "parameters": [NAME_PARAM],
        "post": op("Top up a key (negative: correction); one ledger row", "Credited", errors=(*WRITE, "409"),
                   body="Credit"),
    },
    "/api/usage": {
        "get": op("Usage rows, newest first", "UsageList", errors=("400", "401", "403"), csv=True, parameters=[
            *FILTERS, query("limit", f"rows, 1 to {MAX_USAGE_ROWS} (default 100)",
                               {"type": "integer", "minimum": 1, "maximum": MAX_USAGE_ROWS}), FORMAT]),
    },
    "/api/usage/summary": {
        "get": op("Sums of requests, tokens and cost", "SummaryList", errors=("400", "401", "403"), csv=True,
                  parameters=[query("by", "group by", {"enum": ["model", "key", "channel", "day"]}), *FILTERS, FORMAT]),
    },
    "/api/usage/series": {
        "get": op("Sums per hour or day (since: default 24h for hour, 30d for day)", "Series",
                  errors=("400", "401", "403"), parameters=[query("bucket", "bucket", {"enum": ["hour", "day"]}),
                                                             query("by", "split by", {"enum": ["model", "key"]}), *FILTERS]),
    },
    "/api/channels": {"get": op("Channels and their circuit breakers (admin only)", "ChannelList", errors=("401", "403"))},
    "/v1/me": {"get": op("The caller's own key, spend and open holds", "SelfMe")},
    "/v1/dashboard/billing/subscription": {
        "get": op("OpenAI's legacy billing shape: hard_limit_usd - total_usage/100 = balance", "BillingSubscription")
    },
    "/v1/dashboard/billing/usage": {
        "get": op("OpenAI's legacy usage shape (total_usage in cents)", "BillingUsage", errors=("400", "401"),
                  parameters=[query("start_date", "YYYY-MM-DD, UTC, inclusive", {"type": "string", "format": "date"}),
                              query("end_date", "YYYY-MM-DD, UTC, exclusive", {"type": "string", "format": "date"})]),
    },
}  # fmt: skip


def key_bodies(settings: Settings) -> dict[str, Schema]:
    """CreateKey and EditKey: a key's group and models must be ones the config has."""
    group: Schema = {"enum": sorted(settings.groups)}
    models: Schema = {"type": "array", "items": {"enum": sorted(settings.routes)}}
    return {
        "CreateKey": closed(obj(
            ["name"],
            name={"type": "string", "pattern": f"^{KEY_NAME.pattern}$"},
            credit_usd=amount(negative=False, zero=True),
            group=group,
            models=models,
            # At most 7 digits of days end before 9999; the server reads any duration that does.
            expires_in={"type": ["string", "null"], "pattern": "^[0-9]{1,6}[smhd]$", "examples": ["30d", "12h"],
                        "description": "ends by 9999 (UTC)"},
            rpm=PER_MINUTE,
            tpm=PER_MINUTE,
        )),
        "EditKey": closed(obj(
            group=group,
            models=models,
            expires_at={**UNIX, "exclusiveMinimum": 0, "maximum": END_OF_TIME},
            rpm=PER_MINUTE,
            tpm=PER_MINUTE,
        )),
    }  # fmt: skip


def document(settings: Settings) -> Schema:
    return {**DOCUMENT, "components": {**COMPONENTS, "schemas": {**SCHEMAS, **key_bodies(settings)}}}


COMPONENTS: Schema = {"schemas": SCHEMAS, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
DOCUMENT: Schema = {
    "openapi": "3.1.0",
    "info": {
        "title": "Token Bridge admin API",
        "version": "1",
        "description": "Bearer: the admin token (server.admin_token; empty = admin API off) or a key's own secret"
        " (read-only, its own data). Money: *_usd exact decimal strings and *_nano_usd integers.",
    },
    "paths": PATHS,
    "components": COMPONENTS,
    "security": [{"bearer": []}],
}


def openapi_endpoint(current: Callable[[], Settings]) -> Callable[[Request], Awaitable[Response]]:
    """GET /api/openapi.json: the document of the config in force, made once per config version."""
    made: dict[int, tuple[Settings, bytes]] = {}  # one entry: the settings it was made for, and the bytes

    async def endpoint(request: Request) -> Response:
        settings = current()
        cached = made.get(0)
        if cached is None or cached[0] is not settings:
            cached = made[0] = (settings, orjson.dumps(document(settings)))
        return Response(cached[1], media_type="application/json")

    return endpoint
