"""The OpenAPI 3.1 document of the admin API and the key holders' self-service routes."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Token Bridge admin API", "version": "1"},
    "paths": {},
}


async def openapi_document(request: Request) -> Response:
    return Response(orjson.dumps(DOCUMENT), media_type="application/json")
