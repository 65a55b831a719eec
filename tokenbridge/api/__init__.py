"""The account API (/api/*, SPEC §9, §10), its OpenAPI document, and the key holders' self-service routes."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from tokenbridge.api.channels import ChannelsAPI
from tokenbridge.api.codes import CodesAPI
from tokenbridge.api.keys import KeysAPI
from tokenbridge.api.models import ModelsAPI
from tokenbridge.api.openapi import openapi_endpoint
from tokenbridge.api.people import PeopleAPI
from tokenbridge.api.selfservice import SelfService
from tokenbridge.api.session import SessionAPI
from tokenbridge.api.usage import UsageAPI
from tokenbridge.runtime import Runtime


def api_routes(runtime: Runtime) -> list[BaseRoute]:
    """Every route of this package, for create_app's route table."""
    parts = (SessionAPI, PeopleAPI, KeysAPI, ModelsAPI, UsageAPI, ChannelsAPI, CodesAPI, SelfService)
    return [
        Route("/api/openapi.json", openapi_endpoint(runtime.current_settings), methods=["GET"]),
        *(route for part in parts for route in part(runtime).routes()),
    ]
