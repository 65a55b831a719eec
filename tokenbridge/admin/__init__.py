"""The admin HTTP API (/admin/*), its OpenAPI document, and the key holders' self-service routes."""

from __future__ import annotations

from starlette.routing import BaseRoute

from tokenbridge.admin.routes import AdminAPI
from tokenbridge.admin.selfservice import SelfService
from tokenbridge.runtime import Runtime


def admin_routes(runtime: Runtime) -> list[BaseRoute]:
    """Every route of this package, for create_app's route table."""
    return [*AdminAPI(runtime).routes(), *SelfService(runtime).routes()]
