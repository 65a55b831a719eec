"""`GET /api/models`: the models the caller may use, each with the routes it can be called on (the
console's key form shows them as checkboxes). A key's secret: the models its allowlist lets through;
a signed-in account or the admin: every served model (a key made there may be narrowed to any)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tokenbridge.api.auth import authenticate
from tokenbridge.api.responses import listing
from tokenbridge.runtime import Runtime


class ModelsAPI:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/models", self.models, methods=["GET"])]

    async def models(self, request: Request) -> Response:
        principal = await authenticate(self.runtime, request)
        settings = self.runtime.settings
        served = sorted(settings.routes)
        if principal.key is not None:
            served = [model for model in served if principal.key.allows(model)]
        return listing([{"id": m, "object": "model", "routes": list(settings.model_routes[m])} for m in served])
