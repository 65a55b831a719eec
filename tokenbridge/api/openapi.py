"""The OpenAPI 3.1 document of the account API (/api/*) and the key holders' self-service routes
(/v1/me, /v1/dashboard/billing/*), served at GET /api/openapi.json without auth (it holds no data).

Written by hand from schemas.py; tests/e2e/test_api_openapi.py validates it with
openapi-spec-validator and checks that it names exactly the routes the app serves, and
tests/e2e/test_api_schemathesis.py checks that the routes take exactly what it allows. The groups
and models a key or an account may be given come from the config, so the document is made per
config version.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tokenbridge.api.params import MAX_USAGE_ROWS
from tokenbridge.api.schemas import (
    CIDRS,
    EXPIRES_IN,
    KEY_NAME_SCHEMA,
    NAME,
    PASSWORD,
    PER_MINUTE,
    SCHEMAS,
    SPEND_LIMIT,
    STR,
    UNIX,
    Schema,
    amount,
    closed,
    obj,
    ref,
)  # fmt: skip
from tokenbridge.keyrules import END_OF_TIME, ROLES
from tokenbridge.periods import PERIODS
from tokenbridge.settings import Settings

_ERRORS = {
    "400": "a field is wrong (`param` names it); `invalid_code` for a code that cannot be redeemed",
    "401": "no credentials, or ones that are not valid (`invalid_api_key`, `invalid_credentials`)",
    "403": "not allowed to this caller (`permission_denied`, `registration_closed`, `origin_mismatch`:"
    " a cookie-authenticated write without JSON and a same-origin Origin, `ip_not_allowed`)",
    "404": "no such key, account, code or channel (`key_not_found`, `account_not_found`, `code_not_found`,"
    " `channel_not_found`), also for another account's key",
    "409": "a name that is taken (`key_exists`, `account_exists`), a balance that cannot take a credit"
    " (`balance_out_of_range`: nothing was booked), a redeemed code (`code_used`)",
    "429": "too many failed sign-ins or redeems lately (`too_many_attempts`, with Retry-After)",
}


def query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema or STR}


def path_param(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": STR}


SINCE = {"type": "string", "pattern": r"^([0-9]{1,12}(\.[0-9]{1,9})?|[0-9]{1,10}[smhd])$"}
ACCOUNT_QUERY = query("account", "the admin: only this account's (a member: its own only; another is 403)")
FILTERS = [
    ACCOUNT_QUERY,
    query("key", "only this key's rows (a key's secret: only its own; another name is 403)"),
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
    anonymous: bool = False,
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
    elif anonymous:  # signed in or not: both are answered
        operation["security"] = [{}, *DOCUMENT_SECURITY]
    return operation


DOCUMENT_SECURITY: list[Schema] = [{"bearer": []}, {"session": []}]
READ = ("400", "401", "403")
WRITE = ("400", "401", "403", "404")
ID, ACCOUNT_NAME = [path_param("id")], [path_param("name")]
LIMIT = query(
    "limit", f"rows, 1 to {MAX_USAGE_ROWS} (default 100)", {"type": "integer", "minimum": 1, "maximum": MAX_USAGE_ROWS}
)
OFFSET = query(
    "offset",
    "rows to skip: the page after the first `limit` rows is offset=limit (default 0)",
    {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},  # params.offset: at most 18 digits
)
PATHS: dict[str, Schema] = {
    "/api/openapi.json": {"get": op("This document", None, errors=(), auth=False)},
    "/api/register": {"post": op("Sign up (per [accounts] registration); signed in at once (cookie set)", "SignedIn",
                                 status="201", errors=("400", "403", "409", "429"), body="Register", auth=False)},
    "/api/session": {
        "post": op("Sign in: sets the tb_session cookie (HttpOnly, SameSite=Strict)", "SignedIn",
                   errors=("400", "401", "403", "429"), body="SignIn", auth=False),
        "delete": op("Sign out: the session is deleted server-side", "SignedOut", errors=("401", "403")),
    },
    "/api/me": {"get": op("Who is calling: the admin, an account (with its wallet), or a key", "Me")},
    "/api/ledger": {"get": op("The wallet's ledger rows, newest first (top-up history)", "LedgerList",
                              errors=("400", "401", "403", "404"),
                              parameters=[ACCOUNT_QUERY, LIMIT, query("before", "rows older than this id",
                                                                      {"type": "integer", "minimum": 1})])},
    "/api/keys": {
        "get": op("Keys: a member's own, the admin's all (?account=), a key itself", "KeyList",
                  errors=("401", "403", "404"), parameters=[ACCOUNT_QUERY]),
        "post": op("Create a key; the answer holds its secret, once", "CreatedKey", status="201",
                   errors=("400", "401", "403", "409"), body="CreateKey"),
    },
    "/api/keys/{id}": {
        "parameters": ID,
        "get": op("One key", "Key", errors=("401", "404")),
        "patch": op("Edit a key's limits, expiry or status (null clears)", "Key", errors=WRITE, body="EditKey"),
    },
    "/api/keys/{id}/revoke": {
        "parameters": ID,
        "post": op("Revoke a key: the next request with it is refused", "Key", errors=WRITE),
    },
    "/api/redeem": {"post": op("Redeem a code into the signed-in account's wallet", "Redeemed",
                               errors=("400", "401", "403", "409", "429"), body="Redeem")},
    "/api/pricing": {"get": op("Every served model's prices per 1M tokens after the viewer's group multiplier",
                               "Pricing", anonymous=True)},
    "/api/accounts": {
        "get": op("Accounts (admin)", "AccountList", errors=("401", "403"),
                  parameters=[query("search", "names containing this")]),
        "post": op("Create an account (admin); without a password one is generated and shown once",
                   "CreatedAccount", status="201", errors=("400", "401", "403", "409"), body="CreateAccount"),
    },
    "/api/accounts/{name}": {
        "parameters": ACCOUNT_NAME,
        "get": op("One account (admin)", "Account", errors=("401", "403", "404")),
        "patch": op("Role, status, group or password (a new password ends its sessions)", "Account", errors=WRITE,
                    body="EditAccount"),
    },
    "/api/accounts/{name}/credit": {
        "parameters": ACCOUNT_NAME,
        "post": op("Top up a wallet (negative: correction); one ledger row", "Credited", errors=(*WRITE, "409"),
                   body="Credit"),
    },
    "/api/codes": {
        "get": op("Redemption codes (admin)", "CodeList", errors=READ,
                  parameters=[query("status", "only these", {"enum": ["unused", "used", "expired", "disabled"]})]),
        "post": op("Create codes (admin); the answer holds them, once (?format=csv: as CSV)", "CreatedCodes",
                   status="201", errors=READ, body="CreateCodes", csv=True, parameters=[FORMAT]),
    },
    "/api/codes/{id}/disable": {
        "parameters": ID,
        "post": op("Disable an unused code", "Code", errors=(*WRITE, "409")),
    },
    "/api/usage": {
        "get": op("Usage rows, newest first, rejected requests too (cost 0, end_reason refused); a page of"
                  " `limit` rows after `offset`, with the `total`. Only the admin sees channel and"
                  " upstream_model (null for others)", "UsageList", errors=(*READ, "404"), csv=True,
                  parameters=[*FILTERS, LIMIT, OFFSET, FORMAT]),
    },
    "/api/usage/summary": {
        "get": op("Sums of requests, tokens and cost", "SummaryList", errors=(*READ, "404"), csv=True,
                  parameters=[query("by", "group by", {"enum": ["model", "key", "channel", "day"]}), *FILTERS, FORMAT]),
    },
    "/api/usage/series": {
        "get": op("Sums per hour or day (since: default 24h for hour, 30d for day)", "Series",
                  errors=(*READ, "404"), parameters=[query("bucket", "bucket", {"enum": ["hour", "day"]}),
                                                    query("by", "split by", {"enum": ["model", "key"]}), *FILTERS]),
    },
    "/api/channels": {"get": op("Channels, their circuit breakers and their health in words (admin)", "ChannelList",
                                errors=("401", "403"))},
    "/api/channels/{name}/test": {
        "parameters": [path_param("name")],
        "post": op("Send one small real request through the channel now (admin); its breakers do not move",
                   "ChannelTest", errors=("401", "403", "404")),
    },
    "/api/models": {"get": op("The models the caller may use, with the routes each can be called on", "ModelList")},
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


def config_bodies(settings: Settings) -> dict[str, Schema]:
    """The bodies that name a group or models: only ones the config has are taken."""
    group: Schema = {"enum": sorted(settings.groups)}
    models: Schema = {"type": "array", "items": {"enum": sorted(settings.routes)}}
    limits: Schema = {
        "models": models,
        "rpm": PER_MINUTE,
        "tpm": PER_MINUTE,
        "spend_limit_usd": {"oneOf": [SPEND_LIMIT, {"type": "null"}]},
        "spend_limit_period": {"enum": list(PERIODS)},
        "allow_ips": CIDRS,
    }
    return {
        "CreateKey": closed(obj(
            ["name"],
            name=KEY_NAME_SCHEMA,
            account={**NAME, "description": "the admin's: the account (default: one named as the key, made if missing)"},
            credit_usd={**amount(negative=False, zero=True), "description": "the admin's: credit for the account"},
            group={**group, "description": "the admin's: the account's group"},
            expires_in={**EXPIRES_IN, "description": "ends by 9999 (UTC)"},
            **limits,
        )),
        "EditKey": closed(obj(
            expires_at={**UNIX, "exclusiveMinimum": 0, "maximum": END_OF_TIME},
            status={"enum": ["active", "disabled"]},
            **limits,
        )),
        "CreateAccount": closed(obj(
            ["name"], name=NAME, password=PASSWORD, role={"enum": list(ROLES)}, group=group,
            credit_usd=amount(negative=False, zero=True),
        )),
        "EditAccount": closed(obj(
            role={"enum": list(ROLES)}, status={"enum": ["active", "disabled"]}, group=group, password=PASSWORD,
        )),
    }  # fmt: skip


def document(settings: Settings) -> Schema:
    return {**DOCUMENT, "components": {**COMPONENTS, "schemas": {**SCHEMAS, **config_bodies(settings)}}}


COMPONENTS: Schema = {
    "schemas": SCHEMAS,
    "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer", "description": "the admin token, or a key's secret (read-only)"},
        "session": {"type": "apiKey", "in": "cookie", "name": "tb_session", "description": "POST /api/session sets it"},
    },
}
DOCUMENT: Schema = {
    "openapi": "3.1.0",
    "info": {
        "title": "Token Bridge account API",
        "version": "2",
        "description": "Sign in with POST /api/session (a cookie), or send the admin token (server.admin_token)"
        " or a key's own secret (read-only, its own data) as a Bearer token. A cookie-authenticated write needs"
        " Content-Type: application/json and a same-origin Origin. Money: *_usd exact decimal strings and"
        " *_nano_usd integers.",
    },
    "paths": PATHS,
    "components": COMPONENTS,
    "security": DOCUMENT_SECURITY,
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
