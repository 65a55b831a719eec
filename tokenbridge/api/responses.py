"""How the account API answers: JSON (never cached: answers carry private data, some a secret),
lists in OpenAI's shape, CSV, and one route per path whatever its methods."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Endpoint = Callable[[Request], Awaitable[Response]]
NO_STORE = {"cache-control": "no-store"}


def json_response(data: Any, status: int = 200, *, headers: dict[str, str] | None = None) -> Response:
    # no-store: a create answer holds a secret, and every answer is one account's private data.
    return Response(orjson.dumps(data), status, media_type="application/json", headers={**NO_STORE, **(headers or {})})


def listing(data: list[Any], **extra: Any) -> Response:
    return json_response({"object": "list", **extra, "data": data})


def csv_response(text: str, *, filename: str | None = None, status: int = 200) -> Response:
    headers = dict(NO_STORE)
    if filename:
        headers["content-disposition"] = f'attachment; filename="{filename}"'
    return Response(text, status, media_type="text/csv", headers=headers)


def by_method(path: str, **endpoints: Endpoint) -> Route:
    """One route for every method a path takes, so a 405's `Allow` lists them all (Starlette's comes
    from the first route whose path matches; one route per method listed only that one's)."""

    async def endpoint(request: Request) -> Response:
        method = request.method.lower()
        return await endpoints["get" if method == "head" else method](request)  # Starlette adds HEAD to GET

    return Route(path, endpoint, methods=[method.upper() for method in endpoints])
