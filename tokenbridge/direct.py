"""Direct routes: an OpenAI route's pipeline reached by one dict look-up, past Starlette's routing layers.

The Starlette app stays the app (its lifespan, its error middleware, its router for every other
route), but a request on `/v1/chat/completions` and the other pipeline routes went on from intake
through Starlette's ExceptionMiddleware (a send wrapper per request), the router's walk of its
routes (a regex per route until one matches) and `Route.handle`'s method check, only to reach the
pipeline built for that route once at start-up (issue 17: ~4% of the gateway's samples). This
innermost middleware maps the exact (method, path) of those routes to their pipeline, and puts in
the scope what the router would have (`route`, `endpoint`, `path_params`; observe labels the
request by its route's template). Everything else goes on to the router as before: another method
(405), a trailing slash (the router's redirect), a `root_path` (the router strips it), every other
route. The pipelines need nothing of the ExceptionMiddleware: their errors are GatewayErrors, which
intake renders; a `HTTPException` is Starlette's own, for a route that matched nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import Route

from tokenbridge.asgi import ASGIApp, Receive, Scope, Send


class DirectRoutes:
    """Dispatches the given routes' exact (method, path) itself; writes no field of the Call."""

    def __init__(self, app: ASGIApp, *, routes: Iterable[Route]) -> None:
        self.app = app
        self.direct: dict[tuple[str, str], Route] = {}
        for route in routes:
            if route.param_convertors or route.app is not route.endpoint or not route.methods:
                raise ValueError(f"{route.path}: only a raw ASGI app on a fixed path and given methods is direct")
            self.direct.update({(method, route.path): route for method in route.methods})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            route = self.direct.get((scope["method"], scope["path"]))
            if route is not None:
                scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, {}
                await route.app(scope, receive, send)
                return
        await self.app(scope, receive, send)
