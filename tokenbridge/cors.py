"""CORS for browser apps calling the gateway directly (`[server] cors_origins`, SPEC §3).

Starlette's CORSMiddleware (a pure ASGI class) with two changes: a preflight it allows is a 204 with
no body (SPEC §3), and one it refuses is an OpenAI-shaped 400 instead of plain text. Never with
credentials: callers authenticate with a bearer key, not cookies, so `*` stays a plain `*` and an
origin is allowed only if it is listed. Any request header is allowed (the preflight mirrors what
was asked): the SDKs send their own (`x-stainless-*`), and none of a caller's headers reach the
upstream anyway. Read at start: a reload keeps the origins the server started with.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from tokenbridge.asgi import ASGIApp
from tokenbridge.errors import InvalidRequest

METHODS = ("GET", "POST", "PATCH", "DELETE", "OPTIONS")
EXPOSED = ("x-request-id", "retry-after", "x-should-retry")  # what an SDK in a page reads from an answer
_BODY_HEADERS = ("content-length", "content-type")


class CorsMiddleware(CORSMiddleware):
    def __init__(self, app: ASGIApp, *, origins: tuple[str, ...]) -> None:
        super().__init__(
            app, allow_origins=origins, allow_methods=METHODS, allow_headers=["*"], allow_credentials=False,
            expose_headers=EXPOSED, max_age=600,
        )  # fmt: skip

    def preflight_response(self, request_headers: Headers) -> Response:
        answer = super().preflight_response(request_headers)
        headers = {k: v for k, v in answer.headers.items() if k not in _BODY_HEADERS}
        if answer.status_code == 200:
            return Response(status_code=204, headers=headers)
        error = InvalidRequest(f"{bytes(answer.body).decode()} for this gateway (see [server] cors_origins).")
        return Response(error.body(), status_code=error.status, headers=headers, media_type="application/json")
