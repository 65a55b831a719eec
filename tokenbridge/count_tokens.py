"""`POST /v1/messages/count_tokens`: how many input tokens a Messages request would be.

Anthropic answers it free of charge, so it holds nothing, bills nothing and writes no usage row.
The model's `anthropic` channels are asked in priority order (the caller's `anthropic-version` and
`anthropic-beta` forwarded, as on /v1/messages) and the first answer that is one (a 200, or a 4xx
about the request) is passed on. Where the model has no such channel, or none of them answers,
the tokens are counted here with the offline tokenizer (tokens.py), and the answer says so:
`"estimated": true` in the body and `x-tokenbridge-token-count: estimated` in the head
(`upstream` where the channel counted). Errors have Anthropic's shape (faces.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson

from tokenbridge.adapters import ANTHROPIC_HEADERS
from tokenbridge.asgi import Receive, Scope, Send
from tokenbridge.call import Call, get_call
from tokenbridge.errors import GatewayError, InvalidRequest, unknown_model
from tokenbridge.limits import MAX_JSON_BYTES
from tokenbridge.stages.auth import caller_token, check_address, resolve_key
from tokenbridge.stages.body import check_shape, read_body
from tokenbridge.store.db import Database
from tokenbridge.store.keys import KeyCache
from tokenbridge.tokens import prompt_tokens
from tokenbridge.upstream.client import UpstreamClient, speaks_messages
from tokenbridge.upstream.proxy import RETRY_STATUSES, forwarded

log = logging.getLogger("tokenbridge")

PATH = "/messages/count_tokens"
SOURCE_HEADER = b"x-tokenbridge-token-count"


class CountTokensEndpoint:
    """Authenticates the caller itself, so that even a missing key is answered in Anthropic's shape."""

    def __init__(self, *, client: UpstreamClient, keys: KeyCache, db: Callable[[], Database]) -> None:
        self.client = client
        self.keys = keys
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = get_call(scope)
        call.route = "count_tokens"  # first: every error from here on in Anthropic's face
        call.key = await resolve_key(caller_token(scope), keys=self.keys, db=self.db())
        check_address(scope, call.key, call.settings)  # allow_ips count here as on every route
        server = call.settings.server
        raw = await read_body(scope, receive, server.max_body_bytes, timeout_s=server.body_timeout_s)
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest("We could not parse the JSON body of your request.") from exc
        call.body = check_shape("chat", parsed)  # a Messages request's `model` and `messages`, no max_tokens
        call.model = call.body["model"]
        if ("messages", call.model) not in call.settings.carriers or not call.key.allows(call.model):
            raise unknown_model(call.model)  # a model not served on /v1/messages (routing.py) is not counted either
        if await self._passed_on(call, scope, send):
            return
        count = await asyncio.to_thread(prompt_tokens, call.body, call.model)
        body = orjson.dumps({"input_tokens": count, "estimated": True})
        await _answer(send, 200, body, b"estimated")

    async def _passed_on(self, call: Call, scope: Scope, send: Send) -> bool:
        """Ask the model's anthropic channels in turn; True once one's answer went to the caller."""
        headers = forwarded(scope["headers"], ANTHROPIC_HEADERS)
        for channel in call.settings.carriers[("messages", call.model)]:
            if not speaks_messages(channel):
                continue
            payload = orjson.dumps({**call.body, "model": channel.upstream_model(call.model)})
            try:
                response = await self.client.open(channel, PATH, payload, stream=False, headers=headers)
            except GatewayError as exc:
                log.warning("request %s: channel %r could not count tokens: %s", call.request_id, channel.name, exc)
                continue
            try:
                if response.status in RETRY_STATUSES or response.status in (401, 403):
                    log.warning("request %s: channel %r answered count_tokens with HTTP %d: %s",
                                call.request_id, channel.name, response.status, await response.peek())  # fmt: skip
                    continue
                if response.status != 200:
                    await response.rebuild_error()  # the caller's mistake, without a secret in it
                body = await response.read_whole(MAX_JSON_BYTES)
            except GatewayError as exc:
                log.warning("request %s: channel %r broke off count_tokens: %s", call.request_id, channel.name, exc)
                continue
            finally:
                response.close()
            if body is None:
                continue
            call.channel = channel
            await _answer(send, response.status, body, b"upstream")
            return True
        return False


async def _answer(send: Send, status: int, body: bytes, source: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, (SOURCE_HEADER, source)]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
