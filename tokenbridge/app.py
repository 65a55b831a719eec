"""create_app(settings) -> the Starlette app: lifespan, the route table, and the stage list, in order.

Every OpenAI route runs the same chain of pure ASGI stages, outermost first; reading
`OPENAI_STAGES` top to bottom is reading what happens to a request, and what each stage is given
of the runtime (the database as `current_db`: the lifespan opens it after the stages are built).
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from tokenbridge.api import api_routes
from tokenbridge.asgi import ASGIApp
from tokenbridge.console import console_routes
from tokenbridge.cors import CorsMiddleware
from tokenbridge.count_tokens import CountTokensEndpoint
from tokenbridge.direct import DirectRoutes
from tokenbridge.endpoints import ModelEndpoint, ModelsEndpoint, healthz, http_exception, metrics_endpoint, readyz
from tokenbridge.observe import ObserveMiddleware
from tokenbridge.process import die_with_supervisor
from tokenbridge.runtime import Runtime
from tokenbridge.settings import Settings, load_settings
from tokenbridge.stages.auth import AuthMiddleware
from tokenbridge.stages.body import BodyMiddleware
from tokenbridge.stages.intake import IntakeMiddleware
from tokenbridge.stages.mapping import MappingMiddleware
from tokenbridge.stages.meter import MeterMiddleware
from tokenbridge.stages.quota import QuotaMiddleware
from tokenbridge.stages.refusals import RefusalMiddleware
from tokenbridge.stages.shape import ShapeMiddleware
from tokenbridge.upstream.proxy import UpstreamProxy

Stage = Callable[[ASGIApp, Runtime, str], ASGIApp]

# The pipeline of an OpenAI completion route, outermost first (observe and intake wrap the whole app, below).
OPENAI_STAGES: tuple[Stage, ...] = (
    lambda app, rt, route: RefusalMiddleware(app, keys=rt.keys, db=rt.current_db),  # a usage row for refusals
    lambda app, rt, route: BodyMiddleware(app, route=route),  # read + parse the body once into the Call
    lambda app, rt, route: AuthMiddleware(app, keys=rt.keys, db=rt.current_db),  # bearer key -> call.key
    lambda app, rt, route: QuotaMiddleware(
        app, db=rt.current_db, purse=rt.purse, spawn=rt.spawn
    ),  # hold before, settle after
    lambda app, rt, route: MappingMiddleware(app, rng=rt.rng, breakers=rt.breakers),  # model -> channels to try
    lambda app, rt, route: ShapeMiddleware(app),  # caller's shape <-> upstream's shape
    lambda app, rt, route: MeterMiddleware(app),  # status, TTFB, usage, complete or how it broke
)


def pipeline(runtime: Runtime, route: str) -> ASGIApp:
    """The stages wrapped around the upstream proxy, built once at start-up."""
    app: ASGIApp = UpstreamProxy(client=runtime.upstream, breakers=runtime.breakers)
    for stage in reversed(OPENAI_STAGES):
        app = stage(app, runtime, route)
    return app


def create_app(
    settings: Settings,
    *,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """The gateway. `rng` orders channels of equal priority and `clock` times the breakers' back-offs
    (tests pass a seeded one and a hand-moved one)."""
    runtime = Runtime(settings, rng=rng, clock=clock)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.close()

    authed = functools.partial(AuthMiddleware, keys=runtime.keys, db=runtime.current_db)  # a key holder's routes
    pipelines = [  # also dispatched past the router, by DirectRoutes (direct.py)
        Route("/v1/chat/completions", pipeline(runtime, "chat"), methods=["POST"]),
        Route("/v1/completions", pipeline(runtime, "completions"), methods=["POST"]),
        Route("/v1/embeddings", pipeline(runtime, "embeddings"), methods=["POST"]),
        Route("/v1/messages", pipeline(runtime, "messages"), methods=["POST"]),  # `?beta=true` too: Claude Code's
        Route("/v1/responses", pipeline(runtime, "responses"), methods=["POST"]),
    ]
    routes = [
        *pipelines,
        Route(
            "/v1/messages/count_tokens",
            CountTokensEndpoint(client=runtime.upstream, keys=runtime.keys, db=runtime.current_db),
            methods=["POST"],
        ),
        Route("/v1/models", authed(ModelsEndpoint()), methods=["GET"]),
        Route("/v1/models/{model:path}", authed(ModelEndpoint()), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/", healthz, methods=["GET"]),  # and HEAD: Claude Code's probe, sent without a key
        Route("/readyz", readyz(runtime), methods=["GET"]),
        *api_routes(runtime),  # /api/*, /v1/me, /v1/dashboard/billing/* (tokenbridge/api/)
        *console_routes(),  # the web console: static files calling the admin API
        Route("/metrics", metrics_endpoint(runtime), methods=["GET"]),
    ]
    origins = settings.server.cors_origins  # read at start (cors.py)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            *([Middleware(CorsMiddleware, origins=origins)] if origins else []),  # preflights, origin headers
            Middleware(ObserveMiddleware, metrics=runtime.metrics),  # metrics + access line, once a request ended
            Middleware(IntakeMiddleware, settings=runtime.current_settings),
            Middleware(DirectRoutes, routes=pipelines),  # the pipelines' exact paths, past the router's layers
        ],
        exception_handlers={HTTPException: http_exception},
    )
    return app


def app_from_env() -> Any:
    """Factory for `uvicorn --factory` and `serve --workers N`: the config path comes from the environment.

    A worker of `serve --workers N` first ties its life to the supervisor's: a supervisor killed
    with SIGKILL cannot stop its workers, and orphans serving on would spend holds nobody tracks."""
    from tokenbridge.logs import configure_logging

    die_with_supervisor()

    configure_logging()  # a worker process starts with none of the parent's logging
    return create_app(load_settings(os.environ.get("TOKENBRIDGE_CONFIG", "config.toml")))
