"""The OpenAPI 3.1 document of the admin API (/admin/*) and the key holders' self-service routes
(/v1/me, /v1/dashboard/billing/*), served at GET /admin/openapi.json without auth (it holds no data).

Written by hand, small helpers keep it short; tests/e2e/test_admin_openapi.py validates it with
openapi-spec-validator and checks that it names exactly the routes the app serves.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tokenbridge.keyrules import END_OF_TIME, KEY_NAME, MAX_PER_MINUTE

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str] | None = None, **properties: Schema) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def listing(item: Schema) -> Schema:
    return obj(["object", "data"], object={"const": "list"}, data={"type": "array", "items": item})


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
USD: Schema = {"type": "string", "description": 'exact decimal USD, like "2.50"', "examples": ["2.50"]}
NANO: Schema = {"type": "integer", "description": "nano-USD (1e-9 USD), exact"}
AMOUNT: Schema = {"oneOf": [STR, NUM], "description": 'USD as a string ("2.50", exact) or a number'}
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
    "CreateKey": obj(
        ["name"],
        name={"type": "string", "pattern": f"^{KEY_NAME.pattern}$"},
        credit_usd=AMOUNT,
        group=STR,
        models={"type": "array", "items": STR},
        expires_in={"type": ["string", "null"], "examples": ["30d", "12h"], "description": "ends by 9999 (UTC)"},
        rpm=PER_MINUTE,
        tpm=PER_MINUTE,
    ),
    "EditKey": obj(
        group=STR,
        models={"type": "array", "items": STR},
        expires_at={**UNIX, "exclusiveMinimum": 0, "maximum": END_OF_TIME},
        rpm=PER_MINUTE,
        tpm=PER_MINUTE,
    ),
    "Credit": obj(["amount_usd"], amount_usd=AMOUNT, note={"type": ["string", "null"], "maxLength": 500}),
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
    "409": "a key with that name exists (`key_exists`)",
}


def query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema or STR}


NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": STR}
FILTERS = [
    query("key", "only this key's rows (a key holder: only its own; another name is 403)"),
    query("model", "only this model"),
    query("channel", "only this channel"),
    query("since", "unix seconds, or a duration back from now like 24h"),
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
    "/admin/openapi.json": {"get": op("This document", None, errors=(), auth=False)},
    "/admin/me": {"get": op("Who the token belongs to: the admin, or a key holder and its key", "Me")},
    "/admin/keys": {
        "get": op("Keys (a key holder: only its own)", "KeyList"),
        "post": op("Create a key; the answer holds its secret, once", "CreatedKey", status="201",
                   errors=("400", "401", "403", "409"), body="CreateKey"),
    },
    "/admin/keys/{name}": {
        "parameters": [NAME_PARAM],
        "get": op("One key", "Key", errors=("401", "404")),
        "patch": op("Edit a key's group, models, expiry or limits (null clears)", "Key", errors=WRITE, body="EditKey"),
    },
    "/admin/keys/{name}/revoke": {
        "parameters": [NAME_PARAM],
        "post": op("Revoke a key: the next request with it is refused", "Key", errors=WRITE),
    },
    "/admin/keys/{name}/credit": {
        "parameters": [NAME_PARAM],
        "post": op("Top up a key (negative: correction); one ledger row", "Credited", errors=WRITE, body="Credit"),
    },
    "/admin/usage": {
        "get": op("Usage rows, newest first", "UsageList", errors=("400", "401", "403"), csv=True, parameters=[
            *FILTERS, query("limit", "rows, 1 to 1000 (default 100)", {"type": "integer"}), FORMAT]),
    },
    "/admin/usage/summary": {
        "get": op("Sums of requests, tokens and cost", "SummaryList", errors=("400", "401", "403"), csv=True,
                  parameters=[query("by", "group by", {"enum": ["model", "key", "channel", "day"]}), *FILTERS, FORMAT]),
    },
    "/admin/usage/series": {
        "get": op("Sums per hour or day (since: default 24h for hour, 30d for day)", "Series",
                  errors=("400", "401", "403"), parameters=[query("bucket", "bucket", {"enum": ["hour", "day"]}),
                                                             query("by", "split by", {"enum": ["model", "key"]}), *FILTERS]),
    },
    "/admin/channels": {"get": op("Channels and their circuit breakers (admin only)", "ChannelList", errors=("401", "403"))},
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

DOCUMENT: Schema = {
    "openapi": "3.1.0",
    "info": {
        "title": "Token Bridge admin API",
        "version": "1",
        "description": "Bearer: the admin token (server.admin_token; empty = admin API off) or a key's own secret"
        " (read-only, its own data). Money: *_usd exact decimal strings and *_nano_usd integers.",
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"bearer": []}],
}
_BODY = orjson.dumps(DOCUMENT)


async def openapi_document(request: Request) -> Response:
    return Response(_BODY, media_type="application/json")
