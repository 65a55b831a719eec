"""The small endpoints: model list and model, liveness, readiness, metrics, and OpenAI-shaped 404/405."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from tokenbridge.asgi import Receive, Scope, Send
from tokenbridge.call import get_call
from tokenbridge.errors import GatewayError, MethodNotAllowed, RouteNotFound, unknown_model
from tokenbridge.metrics import CONTENT_TYPE
from tokenbridge.runtime import Runtime
from tokenbridge.store.db import StoreError
from tokenbridge.store.ledger import count_holds

JSON = "application/json"
log = logging.getLogger("tokenbridge")


def model_entry(model: str, routes: tuple[str, ...]) -> dict[str, object]:
    """OpenAI's Model object, plus `routes`: the routes it can be called on (routing.py; clients ignore it)."""
    return {"id": model, "object": "model", "created": 0, "owned_by": "tokenbridge", "routes": routes}


class ModelsEndpoint:
    """GET /v1/models: the models this key may use, in OpenAI's list shape (runs after auth)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = get_call(scope)
        assert call.key is not None
        models = [m for m in call.settings.routes if call.key.allows(m)]
        routes = call.settings.model_routes
        body = orjson.dumps({"object": "list", "data": [model_entry(m, routes[m]) for m in sorted(models)]})
        await Response(body, media_type=JSON)(scope, receive, send)


class ModelEndpoint:
    """GET /v1/models/{model} (the SDKs' `models.retrieve`): one entry of that list, or 404
    `model_not_found`, the same for a model nobody serves as for one this key may not use."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = get_call(scope)
        assert call.key is not None
        model = scope["path_params"]["model"]
        if model not in call.settings.routes or not call.key.allows(model):
            raise unknown_model(model)
        entry = model_entry(model, call.settings.model_routes[model])
        await Response(orjson.dumps(entry), media_type=JSON)(scope, receive, send)


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


def readyz(runtime: Runtime) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        """Ready when the config is loaded and the database takes a write."""
        try:
            await runtime.db.probe_write()
        except StoreError:  # StoreUnavailable is logged by the store, once per outage
            return Response(b'{"status":"unavailable","database":"not writable"}', status_code=503, media_type=JSON)
        return Response(orjson.dumps({"status": "ready", "channels": len(runtime.settings.channels)}), media_type=JSON)

    return endpoint


def metrics_endpoint(runtime: Runtime) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        """GET /metrics: Prometheus text; no secrets and no key names in it."""
        holds = await count_holds(runtime.db)
        body = runtime.metrics.render(
            settings=runtime.settings, breakers=runtime.breakers, open_holds=holds, transactions=runtime.db.transactions
        )
        return Response(body, media_type=CONTENT_TYPE)

    return endpoint


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown route, wrong method) in OpenAI's error shape."""
    assert isinstance(exc, HTTPException)
    method, path = request.method, request.url.path
    error: GatewayError
    if exc.status_code == 405:
        error = MethodNotAllowed(f"{method} is not allowed on {path}.")
    else:
        error = RouteNotFound(f"Unknown request URL: {method} {path}.")
    return Response(error.body(), status_code=error.status, media_type=JSON, headers=exc.headers)
