"""The JSON Schemas of the account API's answers and bodies, for its OpenAPI 3.1 document (openapi.py).

Small helpers keep them short. Bodies are `closed` (a field they do not name is refused with a
400); answers list what is always there as `required`. Bodies whose values come from the config
(group and model names) are made per config version by openapi.py (`config_bodies`).
"""

from __future__ import annotations

from typing import Any

from tokenbridge.api.params import MAX_NOTE_CHARS
from tokenbridge.keyrules import ACCOUNT_NAME, KEY_NAME, MAX_PER_MINUTE, ROLES
from tokenbridge.passwords import MAX_PASSWORD_CHARS
from tokenbridge.periods import PERIODS
from tokenbridge.routing import ROUTES
from tokenbridge.settings import KINDS

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


def listing(item: Schema, **extra: Schema) -> Schema:
    return obj(["object", "data"], object={"const": "list"}, data={"type": "array", "items": item}, **extra)


def money(name: str) -> dict[str, Schema]:
    return {f"{name}_usd": USD, f"{name}_nano_usd": NANO}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
NULL_STR: Schema = {"type": ["string", "null"]}
USD: Schema = {"type": "string", "description": 'exact decimal USD, like "2.50"', "examples": ["2.50"]}
NANO: Schema = {"type": "integer", "description": "nano-USD (1e-9 USD), exact"}
# As written: "2.50", "-0.25" (to_nano also reads an exponent; the document shows the plain form).
_DECIMAL = r"[0-9]{1,10}(\.[0-9]{1,9})?"
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
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
NAME: Schema = {"type": "string", "pattern": f"^{ACCOUNT_NAME.pattern}$"}
KEY_NAME_SCHEMA: Schema = {"type": "string", "pattern": f"^{KEY_NAME.pattern}$"}
PASSWORD: Schema = {"type": "string", "minLength": 8, "maxLength": MAX_PASSWORD_CHARS}
NOTE: Schema = {"type": ["string", "null"], "maxLength": MAX_NOTE_CHARS}
# At most 6 digits of days end before 9999; the server reads any duration that does.
EXPIRES_IN: Schema = {"type": ["string", "null"], "pattern": "^[0-9]{1,6}[smhd]$", "examples": ["30d", "12h"]}
SPEND_LIMIT: Schema = {**amount(negative=False, zero=False), "description": "USD per spend_limit_period; null: none"}
CIDRS: Schema = {
    "type": ["array", "null"],
    "maxItems": 100,
    "items": {
        "type": "string",
        "pattern": f"^{_OCTET}(\\.{_OCTET}){{3}}(/(3[0-2]|[12]?[0-9]))?$",
        "examples": ["10.0.0.0/8", "203.0.113.7"],
    },
    "description": "CIDRs the key may be used from (IPv6 ones too, like 2001:db8::/32); [] or null: any address",
}

KEY = obj(
    ["id", "name", "account", "prefix", "group", "balance_usd", "balance_nano_usd", "status", "expires_at", "models",
     "rpm", "tpm", "spend_limit_usd", "spend_limit_nano_usd", "spend_period", "allow_ips"],
    id={"type": "string", "description": "the key's public id, as in /api/keys/{id}; not its secret"},
    name=STR,
    account=STR,
    prefix={"type": "string", "description": "the secret's first characters, to tell keys apart"},
    group={"type": "string", "description": "the account's pricing group"},
    **money("balance"),
    status={"enum": ["active", "disabled", "revoked", "expired"]},
    expires_at=UNIX,
    models={"type": "array", "items": STR, "description": "allowlist; [] = every model"},
    rpm=OPT_INT,
    tpm=OPT_INT,
    spend_limit_usd=NULL_STR,
    spend_limit_nano_usd={"type": ["integer", "null"]},
    spend_period={"enum": [*PERIODS, None]},
    allow_ips={"type": "array", "items": STR},
    created_at=NUM,
)  # fmt: skip
ACCOUNT = obj(
    ["name", "role", "status", "group", "balance_usd", "balance_nano_usd", "created_at"],
    name=STR,
    role={"enum": list(ROLES)},
    status={"enum": ["active", "disabled"]},
    group=STR,
    **money("balance"),
    **money("spent"),
    **money("held"),
    created_at=NUM,
)
SUMS = {
    "requests": INT,
    "prompt_tokens": INT,
    "completion_tokens": INT,
    "cached_tokens": INT,
    "cost_usd": USD,
    "cost_nano_usd": NANO,
}
USAGE_ROW = obj(
    ["request_id", "time", "key", "model", "status", "cost_usd", "cost_nano_usd"],
    request_id=STR,
    time={"type": "string", "format": "date-time"},
    created_at=NUM,
    key=STR,
    route=STR,
    model=STR,
    channel=NULL_STR,
    upstream_model=NULL_STR,
    status=INT,
    stream={"type": "boolean"},
    prompt_tokens=INT,
    completion_tokens=INT,
    cached_tokens=INT,
    cost_usd=USD,
    cost_nano_usd=NANO,
    usage_source=NULL_STR,
    end_reason={
        "type": "string",
        "description": "done | refused (rejected before any upstream: cost 0) |"
        " rejected | client_gone | upstream_error | timeout | store_error",
    },
    attempts=INT,
    latency_ms=NUM,
    ttfb_ms={"type": ["number", "null"]},
    error=NULL_STR,
    caller_request_id={**NULL_STR, "description": "the caller's own X-Request-ID, if it sent one"},
    cache_write_tokens={**INT, "description": "the part of prompt_tokens written to the provider's cache"},
)
CODE = obj(
    ["id", "prefix", "amount_usd", "amount_nano_usd", "status", "expires_at", "redeemed_by", "redeemed_at"],
    id={"type": "string", "description": "the code's public id, as in /api/codes/{id}; not the code"},
    prefix=STR,
    **money("amount"),
    status={"enum": ["unused", "used", "expired", "disabled"]},
    expires_at=UNIX,
    note=NULL_STR,
    created_at=NUM,
    redeemed_by={**NULL_STR, "description": "the account that redeemed it"},
    redeemed_at={"type": ["number", "null"]},
)
_CIRCUIT = obj(
    ["model", "state", "reason", "retry_in_s"],
    model=STR,
    state={"enum": ["closed", "open", "half_open"]},
    reason=STR,
    retry_in_s={"type": "number", "description": "open: seconds until a probe is let through"},
    health={"type": "string", "description": 'the state in plain words, like "Working"'},
)
_CHANNEL = obj(
    ["name", "kind", "models", "priority", "weight", "display_url", "circuits"],
    name=STR,
    kind={"enum": list(KINDS)},
    models={"type": "array", "items": STR},
    priority=INT,
    weight=INT,
    display_url={"type": ["string", "null"], "description": "base URL without credentials or query"},
    enabled={"type": "boolean"},
    health={"type": "string", "description": 'the channel in plain words, like "Working normally"'},
    circuits={"type": "array", "items": _CIRCUIT},
)
_CHANNEL_TEST = obj(
    ["channel", "model", "ok", "status", "latency_ms", "verdict"],
    channel=STR,
    model={"type": "string", "description": "the model probed: the channel's first"},
    ok={"type": "boolean"},
    status={"type": "string", "description": '"ok", "HTTP 401", "timeout: ...", or what failed'},
    latency_ms=NUM,
    verdict={"type": "string", "description": "what the result means, in plain words"},
)
_MODEL = obj(
    ["id", "object", "routes"],
    id=STR,
    object={"const": "model"},
    routes={"type": "array", "items": {"enum": list(ROUTES)}},
)
_PAGE = {
    "total": {"type": "integer", "description": "rows matching the filters, on every page"},
    "has_more": {"type": "boolean", "description": "whether a page follows this one"},
}
_PRICE = obj(
    ["model", "input_usd_per_1m", "cached_input_usd_per_1m", "output_usd_per_1m", "cache_write_usd_per_1m", "routes"],
    model=STR,
    input_usd_per_1m={**USD, "description": "USD per 1M prompt tokens, after the group multiplier, exact"},
    cached_input_usd_per_1m=USD,
    output_usd_per_1m=USD,
    cache_write_usd_per_1m={**USD, "description": "USD per 1M prompt tokens written to a provider's cache"},
    routes={
        "type": "array",
        "items": {"enum": list(ROUTES)},
        "description": "the routes the model can be called on: what its channels carry, narrowed by its `routes`",
    },
)
_SERIES_POINT = obj(
    ["t", "requests", "cost_nano_usd"],
    t={"type": "integer", "description": "the bucket's start, unix seconds (UTC-aligned)"},
    model=STR,
    key=STR,
    **{k: v for k, v in SUMS.items() if k != "cached_tokens"},
)
_SIGNED_IN = obj(["role", "account"], role={"enum": list(ROLES)}, account=ref("Account"))

SCHEMAS: dict[str, Schema] = {
    "Key": KEY,
    "KeyList": listing(ref("Key")),
    "CreatedKey": {"allOf": [ref("Key"), obj(["key"], key={"type": "string", "description": "shown this once"})]},
    "Account": ACCOUNT,
    "AccountList": listing(ref("Account")),
    "CreatedAccount": {
        "allOf": [ref("Account"), obj(password={"type": "string", "description": "generated: shown this once"})]
    },
    "SignIn": closed(obj(["name", "password"], name={"type": "string", "minLength": 1, "maxLength": 64},
                         password={"type": "string", "minLength": 1, "maxLength": MAX_PASSWORD_CHARS})),
    "Register": closed(obj(["name", "password"], name=NAME, password=PASSWORD,
                           invite_code={"type": ["string", "null"], "description": "required in invite mode"})),
    "SignedIn": _SIGNED_IN,
    "SignedOut": obj(["signed_out"], signed_out={"const": True}),
    "Me": obj(["role"], role={"enum": ["admin", "member", "key"]}, account=ref("Account"), key=ref("Key")),
    "LedgerList": listing(obj(
        ["id", "kind", "amount_usd", "amount_nano_usd", "time"],
        id={"type": "integer", "description": "pass as ?before= for the page after this row"},
        kind={"enum": ["credit", "charge", "correction", "redeem"]},
        **money("amount"),
        request_id=NULL_STR,
        key={**NULL_STR, "description": "the key that spent (charges)"},
        code={**NULL_STR, "description": "the redeemed code's prefix (redeems)"},
        note=NULL_STR,
        time={"type": "string", "format": "date-time"},
        created_at=NUM,
    ), **_PAGE, next_before={"type": ["integer", "null"], "description": "pass as ?before= for the next page"}),
    "Credit": closed(obj(["amount_usd"], amount_usd=amount(negative=True, zero=False), note=NOTE)),
    "Credited": obj(["name", "amount_usd", "amount_nano_usd", "balance_usd", "balance_nano_usd"],
                    name=STR, **money("amount"), **money("balance")),
    "Redeem": closed(obj(["code"], code={"type": "string", "minLength": 1, "maxLength": 100})),
    "Redeemed": obj(["amount_usd", "balance_usd"], **money("amount"), **money("balance")),
    "CreateCodes": closed(obj(["amount_usd"], amount_usd=amount(negative=False, zero=True),
                              count={"type": "integer", "minimum": 1, "maximum": 10_000},
                              expires_in=EXPIRES_IN, note=NOTE)),
    "Code": CODE,
    "CodeList": listing(ref("Code")),
    "CreatedCodes": listing(
        {"allOf": [ref("Code"), obj(["code"], code={"type": "string", "description": "shown this once"})]},
        csv={"type": "string", "description": "the same codes as CSV (code, id, prefix, amount_usd, expires_at, note)"},
    ),
    "Pricing": listing(_PRICE, group=STR, multiplier={"type": "string", "description": "the group's, exact"}),
    "UsageList": listing(USAGE_ROW, **_PAGE, offset=INT),
    "ModelList": listing(_MODEL),
    "ChannelTest": _CHANNEL_TEST,
    "SummaryList": listing(obj(["requests"], model=STR, key=STR, channel=NULL_STR, day=STR, **SUMS)),
    "Series": obj(
        ["object", "bucket", "by", "data"],
        object={"const": "list"},
        bucket={"enum": ["hour", "day"]},
        by={"enum": ["model", "key"]},
        data={"type": "array", "items": _SERIES_POINT},
    ),
    "ChannelList": listing(_CHANNEL),
    "SelfMe": {"allOf": [ref("Key"), obj(["spent_usd", "spent_nano_usd", "held_nano_usd"], **money("spent"),
                                         held_nano_usd=NANO)]},
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
        daily_costs={"type": "array", "items": obj(
            ["timestamp", "line_items"],
            timestamp=INT,
            line_items={"type": "array", "items": obj(["name", "cost"], name=STR, cost=NUM)},
        )},
    ),
    "Error": obj(
        ["error"],
        error=obj(["message", "type", "param", "code"], message=STR, type=STR, param=NULL_STR, code=NULL_STR),
    ),
}  # fmt: skip
