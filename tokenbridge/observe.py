"""Observe, wrapped around intake: where every HTTP request ends, the one place that reads the finished Call
for the metrics and the access line (logger `tokenbridge.access`, one line per request).

It sits outside intake so it sees every request on every route, the ones intake answers with an
error included (a wrong key, an unknown route): their status is the one intake's rendered error
sent. It records just before the message that completes the answer goes out (the end of the body,
or the one the meter marked as completing it: `[DONE]`, the last byte of a Content-Length), the
moment quota settles too: so the figures are the usage row's, and a caller that holds the whole
answer (a test, a scraper right after it) already sees them counted. A request that never got that
far (the caller left, an error cut a JSON body short) is recorded when the inner app returns. Its
status is the one that went out (a caller that left before any answer went out: nginx's "client
closed request"); how it ended is outcome.py's, as in the usage row.

The line never holds a secret: the key's name, not the bearer; the path without its query string.
Nothing is formatted when the access logger is off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from tokenbridge.asgi import ASGIApp, Message, Receive, Scope, Send
from tokenbridge.call import SCOPE_KEY, Call
from tokenbridge.logs import AccessLine
from tokenbridge.metrics import Metrics
from tokenbridge.money import format_usd
from tokenbridge.outcome import outcome

log = logging.getLogger("tokenbridge")
access_log = logging.getLogger("tokenbridge.access")

UNROUTED = "other"  # the route label of a path no route matched (its own label would be unbounded)


class ObserveMiddleware:
    """Reads the Call when the request has ended; writes no field of it."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.templates: dict[int, str] = {}  # id(endpoint) -> its route's path template, found once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        observed = False

        async def send_observed(message: Message) -> None:
            nonlocal status, observed
            if message["type"] == "http.response.start":
                status = message["status"]
            elif not observed and (not message.get("more_body", False) or scope[SCOPE_KEY].complete):
                observed = True  # before the message that completes the answer: see the module docstring
                self.observe(scope, status)
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except BaseException as exc:
            if not observed:  # escaped intake: the server answers a bare 500, or drops the connection
                observed = True
                self.observe(scope, status, exc)
            raise
        if not observed:  # returned without completing an answer: the caller left
            self.observe(scope, status)

    def route_label(self, scope: Scope) -> str:
        """The matched route's path template (`/api/keys/{name}`; a Mount's prefix), never the values in it,
        which would make a series per key name or file. Starlette's router puts the endpoint in the scope."""
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return UNROUTED
        template = self.templates.get(id(endpoint))
        if template is None:
            routes = getattr(scope.get("app"), "routes", ())
            template = self.templates[id(endpoint)] = route_template(routes, endpoint) or UNROUTED
        return template

    def observe(self, scope: Scope, status: int, failure: BaseException | None = None) -> None:
        call: Call | None = scope.get(SCOPE_KEY)
        if call is None:
            return
        try:
            self.ended(scope, call, status, failure)
        except Exception:  # an observation must never fail the request it observes
            log.exception("request %s: could not record its metrics or access line", call.request_id)

    def ended(self, scope: Scope, call: Call, sent: int, failure: BaseException | None) -> None:
        elapsed = time.perf_counter() - call.started
        ended = outcome(call, failure, sent=sent)  # nothing sent and intake returned: the caller left
        status, end_reason = ended.status, ended.end_reason
        route = self.route_label(scope)
        self.metrics.request_ended(call, route=route, status=status, end_reason=end_reason, elapsed_s=elapsed)
        if access_log.isEnabledFor(logging.INFO):
            usage = call.usage
            line = AccessLine(
                {
                    "request_id": call.request_id,
                    "caller_request_id": call.caller_request_id or None,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "key": call.key.name if call.key is not None else None,
                    "model": call.model or None,
                    "channel": call.channel.name if call.channel is not None else None,
                    "stream": call.stream,
                    "prompt_tokens": usage.prompt_tokens if usage else 0,
                    "completion_tokens": usage.completion_tokens if usage else 0,
                    "cached_tokens": usage.cached_tokens if usage else 0,
                    "usage_source": call.usage_source or None,
                    "cost_usd": format_usd(call.cost),
                    "cost_nano_usd": call.cost,
                    "latency_ms": round(elapsed * 1000, 3),
                    "ttfb_ms": round(call.ttfb * 1000, 3) if call.ttfb is not None else None,
                    "end_reason": end_reason,
                    "attempts": call.attempts,
                    "client": scope["client"][0] if scope.get("client") else None,
                }
            )
            # Logger.info's own way, less its look up the stack for the caller's file and line (no format shows them)
            access_log.handle(
                access_log.makeRecord(access_log.name, logging.INFO, __file__, 0, line, (), None, "ended")
            )


def route_template(routes: Iterable[object], endpoint: object, prefix: str = "") -> str | None:
    """The path template of the route that serves `endpoint`, looking into Mounts."""
    for route in routes:
        path = getattr(route, "path", "")
        if endpoint is getattr(route, "endpoint", None) or endpoint is getattr(route, "app", None):
            return prefix + path
        inner = route_template(getattr(route, "routes", ()), endpoint, prefix + path)
        if inner is not None:
            return inner
    return None
