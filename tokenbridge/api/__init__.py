"""The admin HTTP API (/api/*), its OpenAPI document, and the key holders' self-service routes."""

from __future__ import annotations

from starlette.routing import BaseRoute

from tokenbridge.api.routes import AdminAPI
from tokenbridge.api.selfservice import SelfService
from tokenbridge.runtime import Runtime


def api_routes(runtime: Runtime) -> list[BaseRoute]:
    """Every route of this package, for create_app's route table."""
    return [*AdminAPI(runtime).routes(), *SelfService(runtime).routes()]
