"""Intake, the outermost stage: request id, the Call, and the one place errors are rendered.

Every request gets an id of ours, the key of its hold and usage row. Every response leaves with
`X-Request-ID`: the caller's own when it sent a usable one (kept on the Call, the access line and
the usage row for tracing, never as a key, so an SDK that resends it on a retry is served again),
else ours. A GatewayError
raised by any inner stage becomes an OpenAI-shaped JSON error if nothing was sent yet; once the
response has started it can only become a final SSE error event, after which the stream ends
without `[DONE]`, so no client mistakes a broken stream for a complete one. Anything else is a bug:
logged with its traceback, answered with a bare 500 that carries no detail.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from hashlib import blake2b

from tokenbridge.asgi import ASGIApp, Message, Receive, Scope, Send, is_event_stream
from tokenbridge.call import SCOPE_KEY, Call
from tokenbridge.errors import ClientGone, DatabaseUnavailable, GatewayError, InternalError, render
from tokenbridge.faces import Face, face_of, next_sequence_number
from tokenbridge.settings import Settings
from tokenbridge.store.db import StoreUnavailable, as_unavailable

log = logging.getLogger("tokenbridge")

REQUEST_ID_HEADER = b"x-request-id"
_USABLE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
# Our ids: the time in milliseconds, then a counter under a keyed hash with a per-process random key.
# No random draw (a system call) per request, unique in practice (96 bits), and unguessable: a
# caller who sees one id cannot count our traffic. The time first makes each new id sort after the
# ones before it, so the usage row's and the charge's inserts land at the right edge of their
# request-id indexes instead of on a random page each (half the SQLite work of a settle, measured).
_ID_KEY = secrets.token_bytes(16)
_SEQUENCE = itertools.count()


def _new_process_key() -> None:
    global _ID_KEY
    _ID_KEY = secrets.token_bytes(16)


os.register_at_fork(after_in_child=_new_process_key)  # a forked worker must not repeat its parent's ids


def new_request_id() -> str:
    hashed = blake2b(next(_SEQUENCE).to_bytes(8, "little"), key=_ID_KEY, digest_size=12).hexdigest()
    return f"req_{int(time.time() * 1000):011x}{hashed}"


def caller_request_id_from(scope: Scope) -> str:
    """The caller's X-Request-ID when usable (letters, digits, `._:-`, at most 128), else ""."""
    value: bytes
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and _USABLE_REQUEST_ID.fullmatch(value):
            return value.decode("ascii")
    return ""


class IntakeMiddleware:
    """Outermost: builds the Call, stamps the request id, renders errors."""

    def __init__(self, app: ASGIApp, *, settings: Callable[[], Settings]) -> None:
        self.app = app
        self.settings = settings  # the live config; each request keeps the one it started with

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        call = Call(new_request_id(), self.settings(), caller_request_id=caller_request_id_from(scope))
        scope[SCOPE_KEY] = call
        echoed = call.caller_request_id or call.request_id
        request_id = echoed.encode("ascii")
        started = sse = numbered = False
        sequence = 0  # a numbered stream's next sequence_number, read off what went out (faces.py)
        held: list[Message] = []  # an upstream's error answer, reshaped whole for a route with its own face

        async def send_with_request_id(message: Message) -> None:
            nonlocal started, sse, numbered, sequence
            if message["type"] == "http.response.start":
                started = True
                headers = message.get("headers", ())
                sse = is_event_stream(headers)
                numbered = sse and face_of(call.route).numbered_stream_error is not None
                message["headers"] = [*headers, (REQUEST_ID_HEADER, request_id)]
                if message["status"] >= 400 and not sse and face_of(call.route).passed is not None:
                    held.append(message)
                    return
            elif held:
                held.append(message)
                if message.get("more_body", False):
                    return
                message = await _send_reshaped(send, held, face_of(call.route))
                call.delivered += len(message["body"])
            else:
                body = message.get("body", b"")
                call.delivered += len(body)
                if numbered and body:
                    sequence = next_sequence_number(body, sequence)
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except ClientGone:
            return  # nobody is listening; the meter recorded it
        except Exception as exc:
            error = exc if isinstance(exc, GatewayError) else None
            if error is None and (unavailable := as_unavailable(call.settings.server.database, exc)) is not None:
                if not isinstance(exc, StoreUnavailable):  # a read: writes are logged by the store, once
                    log.warning("request %s: %s", call.request_id, unavailable)
                error = DatabaseUnavailable("The gateway's database cannot take this request now; try again later.")
            if error is None:
                log.exception("request %s failed inside the gateway", call.request_id)
                error = InternalError("The gateway failed to handle this request; see its log for the request id.")
            face = face_of(call.route)
            if not started:
                await render(error, send, request_id=echoed, body=face.body(error), status=face.status(error))
            elif sse:
                try:
                    numbered_error = face.numbered_stream_error
                    event = face.stream_error(error) if numbered_error is None else numbered_error(error, sequence)
                    await send({"type": "http.response.body", "body": event, "more_body": False})
                except Exception:  # the connection itself is broken: nothing more can reach the caller
                    log.warning("request %s: could not send the error event: %s", call.request_id, error.message)
            else:
                # A JSON body cut short cannot carry an error: let the server abort the connection, so
                # the client sees a failed read instead of a body that merely looks short.
                raise


async def _send_reshaped(send: Send, held: list[Message], face: Face) -> Message:
    """Send the head of an upstream's error answer in the route's face; returns its body's message."""
    head, body = held[0], b"".join(m.get("body", b"") for m in held[1:])
    assert face.passed is not None
    head["status"], body = face.passed(head["status"], body)
    head["headers"] = [(k, v) for k, v in head["headers"] if k != b"content-length"]
    head["headers"].append((b"content-length", str(len(body)).encode()))
    await send(head)
    return {"type": "http.response.body", "body": body, "more_body": False}
