"""Refusals, the outermost of the OpenAI stages: a request refused before quota held money for it
(a bad body, a model the key may not use or no channel serves, a wallet or spend limit too low, a
rate limit, an address outside the key's allow_ips) still gets a usage row when a valid key sent
it: status, cost 0, the error, `end_reason = refused`, and no ledger row. So a holder whose calls
fail sees why in the request log, instead of "no requests".

The body is read before auth, so a bad body's key is resolved here, from its token through the key
cache, only on that error path: the success path pays nothing (no work outside the `except`). A
request whose hold was taken is quota's to record (it settles in `finally`); one without a usable
key (401) has nobody to record it for.

Every error that leaves also loses the channel names in its text ("channel 'acme' answered HTTP
500" reads "the provider answered HTTP 500"): callers of the OpenAI routes are key holders, and a
reseller's suppliers are its own. The usage row, written inside, keeps the name for the admin.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tokenbridge.asgi import ASGIApp, Receive, Scope, Send
from tokenbridge.call import Call, get_call
from tokenbridge.errors import GatewayError
from tokenbridge.report import hide_channels
from tokenbridge.stages.auth import caller_token, resolve_key
from tokenbridge.store.db import Database
from tokenbridge.store.keys import KeyCache, KeyRecord
from tokenbridge.store.ledger import settle_hold
from tokenbridge.store.usage import UsageRow

log = logging.getLogger("tokenbridge")

REFUSED = "refused"  # the end reason of a request refused before any money was held for it


def refusal_row(call: Call, key: KeyRecord, error: GatewayError) -> UsageRow:
    """The usage row of a refused request: nothing was sent upstream, nothing is charged."""
    return UsageRow(
        request_id=call.request_id,
        created_at=call.created_at,
        key_id=key.id,
        route=call.route,
        model=call.model,
        channel=None,
        upstream_model=None,
        status=error.status,
        stream=call.stream,
        prompt_tokens=0,
        completion_tokens=0,
        cached_tokens=0,
        cost=0,
        usage_source=None,
        end_reason=REFUSED,
        attempts=0,
        latency_ms=round((time.perf_counter() - call.started) * 1000, 3),
        ttfb_ms=None,
        error=error.message,
        caller_request_id=call.caller_request_id or None,
    )


class RefusalMiddleware:
    """Writes the usage row of a refused request; writes no field of the Call."""

    def __init__(self, app: ASGIApp, *, keys: KeyCache, db: Callable[[], Database]) -> None:
        self.app = app
        self.keys = keys
        self.db = db  # the database the lifespan opened (there is none yet when the stages are built)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except GatewayError as exc:
            call = get_call(scope)
            if not call.held and 400 <= exc.status < 500 and exc.status != 401:
                await self.record(scope, call, exc)
            exc.message = hide_channels(exc.message)
            raise

    async def record(self, scope: Scope, call: Call, error: GatewayError) -> None:
        key = call.key
        if key is None:  # refused before auth (a bad body) or by it (allow_ips): is the key itself valid?
            try:
                key = await resolve_key(caller_token(scope), keys=self.keys, db=self.db())
            except GatewayError:
                return  # no usable key: nobody's log to write to
        try:
            await settle_hold(self.db(), refusal_row(call, key, error))  # no hold, cost 0: a usage row alone
        except Exception as exc:  # the caller still gets its refusal; the log says the row is missing
            log.warning("request %s: could not record its refusal (%s: %s)", call.request_id, type(exc).__name__, exc)
