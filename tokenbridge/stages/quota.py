"""Quota: hold the worst case before forwarding; settle it to the real cost afterwards, always.

The hold is the cost of (an upper bound of the prompt's tokens + the most completion tokens the
request allows), taken from the process's chunk of the key in memory (purse.py: the chunk's row
blocks it from every other process, and is drawn only where balance − open holds covers it), so
concurrent requests cannot spend the same money twice; a key with RPM/TPM limits takes it in one
conditional INSERT instead. The upper bound for the prompt is
`prompt_bound`: the body's byte length for text (a byte-level BPE token is at least one byte, and
the JSON framing outweighs the few tokens of chat framing), but a fixed ceiling for each image part
in place of its URL's bytes. Settling writes the usage row, the charge and the hold's release in one
transaction: just before the last byte of the response goes out (so a caller holding the whole
answer can already see its charge), or in `finally` when the request failed; either way every
request that got a hold ends with exactly one usage row.

A settle that cannot be written (a database that refuses writes, a row it cannot store) must not
hand out the answer for free. The message that would complete the answer is withheld and the
caller gets an error instead: a JSON answer becomes a 503 `billing_unavailable`; a stream ends with
that error event and no `data: [DONE]`. The hold stays, blocking its money, because the upstream
cost is real: the settle is retried in the background (SETTLE_RETRY_DELAYS_S, about seven minutes)
until it lands. What it books is what the caller received, as for every answer that did not
complete: a stream's caller had all its text but the last message and pays the answer's cost; a
JSON caller got nothing and pays nothing. Its row says `end_reason = store_error`. A settle still
unwritten after the last retry, or at shutdown, leaves its hold to the next start. A settle that
fails for a request that failed anyway is retried the same way; the caller gets that failure.

A charge never exceeds its hold: the key cannot go below what it had. When the real cost is higher
(a caller without max_tokens whose answer ran past `default_max_tokens`, or a PDF whose page
images cost more than its bytes), the hold is charged, the row keeps the real token counts, and the
difference is logged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from tokenbridge.asgi import ASGIApp, Message, Receive, Scope, Send, is_event_stream
from tokenbridge.call import Call, get_call
from tokenbridge.errors import BillingUnavailable, GatewayError, QuotaExceeded, RateLimited, unknown_model
from tokenbridge.money import Price, Usage, cost, format_usd
from tokenbridge.outcome import outcome
from tokenbridge.purse import Purse
from tokenbridge.routing import WITHOUT_OUTPUT
from tokenbridge.store.db import Database
from tokenbridge.store.ledger import DuplicateRequestId, Refusal, reserve_hold, settle_hold
from tokenbridge.store.usage import UsageRow
from tokenbridge.tokens import IMAGE_PART_MAX_TOKENS, anthropic_image_source, anthropic_images, image_parts

log = logging.getLogger("tokenbridge")

STORE_ERROR = "store_error"  # the end reason of a request whose settle could not be written
# Seconds between the tries of a settle that failed (about seven minutes in all; see the docstring).
SETTLE_RETRY_DELAYS_S: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 30, 60, 60, 60, 60, 60, 60)


# The fields that bound a route's output, as its upstreams read them. Only these count: a field the
# route does not know (say `max_tokens` on /v1/responses) reaches no upstream as a limit, so it must not
# shrink the hold. Where a route knows two, an upstream may honour either (vLLM takes
# max_completion_tokens over max_tokens), so the hold takes the larger.
LIMIT_FIELDS: dict[str, tuple[str, ...]] = {
    "chat": ("max_completion_tokens", "max_tokens"),
    "completions": ("max_completion_tokens", "max_tokens"),  # the chat shim carries both
    "responses": ("max_output_tokens",),
    "messages": ("max_tokens",),
}


def completion_allowance(call: Call) -> int:
    """Most completion tokens this request can produce (× n choices)."""
    if call.route in WITHOUT_OUTPUT:
        return 0  # an embedding: its hold is its input's alone
    body = call.body
    limits = [v for v in (body.get(name) for name in LIMIT_FIELDS.get(call.route, ())) if v]
    limit = max(limits) if limits else call.settings.server.default_max_tokens
    n = body.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
    return int(limit) * choices


def prompt_bound(raw_body: bytes, body: dict[str, Any]) -> int:
    """The most prompt tokens an upstream can bill for this body.

    An image is billed by its size in tiles, not by its bytes (a 1 MB photo costs at most
    IMAGE_PART_MAX_TOKENS, a short URL as much): each image part's URL is taken out of the byte
    count and the ceiling put in. What else a body carries stays counted by its bytes. Audio parts
    are base64 of at least 8 kbit/s sound, far more bytes than the ~10 tokens a second OpenAI
    bills. File parts (PDF) are billed as their text plus an image of each page: the bytes bound
    the text, but not always the page images of a long, nearly empty PDF, nor a `file_id` (a file
    the gateway cannot see). They are not refused: such a request is charged at most its hold, and
    the log says by how much the cost was over it.
    """
    bound = len(raw_body)
    for part in image_parts(body):
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        bound += IMAGE_PART_MAX_TOKENS - (len(url) if isinstance(url, str) else 0)  # chars <= its bytes in the body
    for block in anthropic_images(body):  # Anthropic's image blocks, on /v1/messages: the same ceiling
        bound += IMAGE_PART_MAX_TOKENS - len(anthropic_image_source(block))
    return bound


def hold_amount(call: Call, price: Price) -> int:
    assert call.key is not None
    most = max(price.input, price.cached_input, price.cache_write_rate)  # any prompt token may be any kind
    worst = Price(input=most, output=price.output, cached_input=0)
    usage = Usage(prompt_tokens=prompt_bound(call.raw_body, call.body), completion_tokens=completion_allowance(call))
    return cost(usage, worst, call.settings.group(call.key.group).multiplier)


def refused(call: Call, refusal: Refusal, amount: int) -> GatewayError:
    assert call.key is not None
    if refusal.reason in ("rpm", "tpm"):
        limit, unit = (call.key.rpm, "requests") if refusal.reason == "rpm" else (call.key.tpm, "tokens")
        return RateLimited(
            f"Rate limit reached: this key may use {limit} {unit} per minute. Try again in {refusal.retry_after_s}s.",
            retry_after_s=refusal.retry_after_s,
            kind=unit,
        )
    worst = (
        f"it could cost up to ${format_usd(amount)} (up to {prompt_bound(call.raw_body, call.body)} prompt and"
        f" {completion_allowance(call)} completion tokens)"
    )
    shorter = "ask for a shorter answer (a lower maximum length)"  # a customer's words: no field names (issue 14)
    if refusal.reason == "key_limit":
        period = {"day": " per day (it resets at 00:00 UTC)", "month": " per month (it resets on the 1st, UTC)"}
        return QuotaExceeded(
            f"This key's spend limit of ${format_usd(call.key.spend_limit or 0)}"
            f"{period.get(call.key.spend_period or 'total', '')} has ${format_usd(refusal.available)} left,"
            f" too little for this request: {worst}. Your balance is not the problem: raise the key's spend"
            f" limit, use another key, or {shorter}."
        )
    return QuotaExceeded(
        f"Your balance is too low for this request: {worst}, and ${format_usd(refusal.available)} is"
        f" available. Top up your balance (redeem a code), or {shorter}."
    )


def usage_row(call: Call, price: Price, failure: BaseException | None, *, billed: bool = True) -> UsageRow:
    """The request's usage row; `billed=False`: the caller received nothing, so no usage is charged."""
    assert call.key is not None
    ended = outcome(call, failure)
    usage = ended.usage if billed else None
    charged = cost(usage, price, call.settings.group(call.key.group).multiplier) if usage else 0
    if charged > call.hold:
        log.warning(
            "request %s: cost %d nano-USD exceeds its hold %d; charging the hold", call.request_id, charged, call.hold
        )
        charged = call.hold
    return UsageRow(
        request_id=call.request_id,
        created_at=call.created_at,
        key_id=call.key.id,
        route=call.route,
        model=call.model,
        channel=call.channel.name if call.channel else None,
        upstream_model=call.upstream_model or None,
        status=ended.status,
        stream=call.stream,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        cached_tokens=usage.cached_tokens if usage else 0,
        cost=charged,
        usage_source=(call.usage_source or None) if usage else None,
        end_reason=ended.end_reason,
        attempts=call.attempts,
        latency_ms=round((time.perf_counter() - call.started) * 1000, 3),
        ttfb_ms=round(call.ttfb * 1000, 3) if call.ttfb is not None else None,
        error=ended.error or None,
        caller_request_id=call.caller_request_id or None,
        cache_write_tokens=usage.cache_write_tokens if usage else 0,
    )


class QuotaMiddleware:
    """Writes call.hold, and call.cost when it settles (in finally at the latest)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        db: Callable[[], Database],
        purse: Purse,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self.app = app
        self.db = db  # the database the lifespan opened (there is none yet when the stages are built)
        self.purse = purse  # admission in memory against chunks, settles journalled in batches
        self.spawn = spawn  # background work for the life of the process: the settle retries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = get_call(scope)
        assert call.key is not None, "quota runs after auth"
        price = call.settings.prices.get(call.model)
        if price is None:  # every served model is priced (config check), so this one is not served
            raise unknown_model(call.model)
        amount = hold_amount(call, price)
        key = call.key
        journal: Callable[[UsageRow], Awaitable[None]]
        if key.rpm is None and key.tpm is None:
            refusal = await self.purse.hold(key, amount)
            journal = functools.partial(self.purse.settle, account_id=key.account_id, hold=amount)
        else:  # a minute's window of requests and tokens: the exact per-request path
            reserve = functools.partial(
                reserve_hold, self.db(), key_id=key.id, account_id=key.account_id, request_id=call.request_id
            )
            refusal = await reserve(amount=amount)
            if refusal is not None and refusal.reason == "wallet" and await self.purse.give_way(key.account_id):
                refusal = await reserve(amount=amount)  # this process's spare room for the account's other keys went
            journal = functools.partial(settle_hold, self.db())
        if refusal is not None:
            raise refused(call, refusal, amount)
        call.hold, call.held = amount, True
        settled = False
        withheld: BillingUnavailable | None = None  # the settle failed: the answer's end does not go out
        streamed = False  # an SSE answer started: its caller holds every event sent so far

        async def settle(failure: BaseException | None) -> bool:
            """The usage row, the charge and the hold's release, in one transaction; False if not written."""
            nonlocal settled, withheld
            settled = True
            row = usage_row(call, price, failure)
            try:
                await asyncio.shield(journal(row))
            except Exception as exc:
                log.error(
                    "request %s: could not settle its hold (%s: %s); the hold stays and the settle is retried",
                    call.request_id,
                    type(exc).__name__,
                    exc,
                )
                if failure is None:  # the answer's end is withheld: the row says what the caller got instead
                    withheld = billing_unavailable(streamed)
                    call.end_reason = STORE_ERROR
                    call.error = f"the gateway could not record its charge ({type(exc).__name__}: {exc})"
                    row = usage_row(call, price, withheld, billed=streamed and call.delivered > 0)
                self.spawn(self.settle_later(row, journal))
                return False
            call.cost = row.cost
            return True

        head: Message | None = None  # a JSON answer's head, held back to leave with its body

        async def send_settled(message: Message) -> None:
            nonlocal head, streamed
            if withheld is not None:
                return  # nothing more goes out: intake sends the error in place of the answer's end
            if message["type"] == "http.response.start":
                streamed = is_event_stream(message.get("headers", ()))
            if message["type"] == "http.response.start" and not streamed:
                # The settle below waits on the writer thread; sent now, the head would leave in a
                # packet of its own. A JSON client has no use for it before the body anyway.
                head = message
                return
            # Settle before the message that completes the answer: the end of the body, or the one the
            # meter marked as completing it (a client stops reading at [DONE] or at Content-Length).
            if not settled and message["type"] == "http.response.body":
                if not message.get("more_body", False) or call.complete:
                    if not await settle(None):
                        return
            if head is not None:
                await send(head)
                head = None
            await send(message)

        failure: BaseException | None = None
        try:
            await self.app(scope, receive, send_settled)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if not settled:
                await settle(failure)
        if withheld is not None:
            raise withheld

    async def settle_later(self, row: UsageRow, journal: Callable[[UsageRow], Awaitable[None]]) -> None:
        """Retry a settle until it lands, for a few minutes; meanwhile its hold keeps the money blocked."""
        error: Exception | None = None
        try:
            for delay in SETTLE_RETRY_DELAYS_S:
                await asyncio.sleep(delay)
                try:
                    await journal(row)
                except DuplicateRequestId:
                    return  # an earlier attempt did land
                except Exception as exc:
                    error = exc
                    continue
                log.warning("request %s: settled on a retry (%d nano-USD charged)", row.request_id, row.cost)
                return
        except asyncio.CancelledError:
            log.error("request %s: shut down before its settle landed; the next start has its hold", row.request_id)
            raise
        log.error(
            "request %s: its settle still failed after %d retries (%s); its hold waits for the next start",
            row.request_id,
            len(SETTLE_RETRY_DELAYS_S),
            error,
        )


def billing_unavailable(streamed: bool) -> BillingUnavailable:
    if streamed:
        return BillingUnavailable(
            "The gateway could not record this answer's charge, so the stream ends here, without [DONE];"
            " the text sent so far is charged once it can be recorded."
        )
    return BillingUnavailable(
        "The answer is ready but the gateway could not record its charge, so it is withheld and nothing is"
        " charged for it. Try again shortly."
    )
