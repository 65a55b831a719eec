"""Direct routes: a pipeline route's request reaches its app with the scope the router would have given it,
and every other request still goes through Starlette's router (405, redirects, other routes, 404)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tokenbridge.asgi import Receive, Scope, Send
from tokenbridge.direct import DirectRoutes


class Recorder:
    """A raw ASGI endpoint that answers with what it saw of the scope."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = {k: scope.get(k) for k in ("path_params", "path", "method")}
        self.seen.append({**seen, "route": scope["route"].path, "endpoint is this app": scope["endpoint"] is self})
        await JSONResponse({"app": self.name})(scope, receive, send)


async def other(request: Request) -> JSONResponse:
    return JSONResponse({"app": "other", "id": request.path_params.get("id")})


def make_app(direct: bool) -> tuple[Starlette, dict[str, Recorder]]:
    apps = {"chat": Recorder("chat"), "responses": Recorder("responses")}
    pipelines = [
        Route("/v1/chat/completions", apps["chat"], methods=["POST"]),
        Route("/v1/responses", apps["responses"], methods=["POST"]),
    ]
    routes = [*pipelines, Route("/v1/things/{id}", other), Route("/v1/plain/", other)]
    middleware = [Middleware(DirectRoutes, routes=pipelines)] if direct else []
    return Starlette(routes=routes, middleware=middleware), apps


REQUESTS = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/responses"),
    ("GET", "/v1/chat/completions"),  # 405 from the router
    ("POST", "/v1/chat/completions/"),  # the router's redirect to the path without the slash
    ("GET", "/v1/things/7"),
    ("GET", "/v1/plain"),  # redirected to /v1/plain/
    ("POST", "/nowhere"),  # 404
]


async def answers(direct: bool) -> tuple[list[tuple[int, str, str | None]], dict[str, list[dict[str, Any]]]]:
    app, apps = make_app(direct)
    transport = httpx.ASGITransport(app=app)
    seen = []
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for method, path in REQUESTS:
            response = await client.request(method, path, json={} if method == "POST" else None)
            seen.append((response.status_code, response.text, response.headers.get("location")))
    return seen, {name: recorder.seen for name, recorder in apps.items()}


async def test_direct_routes_answer_every_request_as_the_router_alone_does() -> None:
    routed, routed_scopes = await answers(direct=False)
    direct, direct_scopes = await answers(direct=True)
    assert direct == routed
    assert [status for status, _, _ in direct] == [200, 200, 405, 307, 200, 307, 404]
    assert direct_scopes == routed_scopes  # the same route, endpoint and path params in the scope
    assert direct_scopes["chat"] == [
        {"path_params": {}, "path": "/v1/chat/completions", "method": "POST", "route": "/v1/chat/completions",
         "endpoint is this app": True},
    ]  # fmt: skip


async def test_a_direct_request_skips_the_router() -> None:
    app, apps = make_app(direct=True)
    app.router.routes = app.router.routes[2:]  # the router alone no longer knows the pipelines
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.post("/v1/chat/completions", json={})).json() == {"app": "chat"}
        assert (await client.get("/v1/chat/completions")).status_code == 404  # any other method: the router's


def test_only_a_raw_app_on_a_fixed_path_can_be_direct() -> None:
    for route in (Route("/v1/things/{id}", Recorder("x"), methods=["POST"]), Route("/v1/f", other, methods=["POST"])):
        with pytest.raises(ValueError, match="only a raw ASGI app"):
            DirectRoutes(Recorder("inner"), routes=[route])
