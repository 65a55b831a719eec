"""Shape: the completion-shape adapter between the caller's route and the upstream's.

Chat requests go upstream as they are. (The `/v1/completions` shim, which turns a prompt into chat
messages and the chat answer back into `text_completion`, streaming included, builds on this stage.)
"""

from __future__ import annotations

from tokenbridge.asgi import ASGIApp, Receive, Scope, Send
from tokenbridge.call import get_call

UPSTREAM_PATHS = {"chat": "/chat/completions", "completions": "/completions"}


class ShapeMiddleware:
    """Writes call.upstream_path and call.upstream_body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = get_call(scope)
        call.upstream_path = UPSTREAM_PATHS[call.route]
        call.upstream_body = call.body
        await self.app(scope, receive, send)
