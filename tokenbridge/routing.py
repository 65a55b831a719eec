"""Which routes a model can be called on (SPEC §10): every route its channels can carry, narrowed by
an optional `routes = [...]` in its `[models."NAME"]` table.

Worked out once per config, at load (`Settings.model_routes`, and `Settings.carriers`: the channels
to try per route and model), so a request only looks it up: the mapping stage tries only channels
that can carry the call's route, and refuses a model that cannot be called on it; `GET /v1/models`
and `/api/pricing` show the same list.

What a provider kind can carry is a row per kind in `KIND_ROUTES`, next to the config checks that
read it: the config is validated below the transports (upstream/client.py), which cannot be imported
from here, and `tests/upstream/test_transports.py` checks that every kind with a transport has a row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Protocol, TypeVar

from tokenbridge.errors import ModelNotFound
from tokenbridge.tomlread import Table, quoted

# The routes the route table (app.py) gives their stages, in the order the model list shows them, and their paths.
ROUTE_PATHS: Mapping[str, str] = MappingProxyType({
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "responses": "/v1/responses",
    "embeddings": "/v1/embeddings",
    "messages": "/v1/messages",
})  # fmt: skip
ROUTES = tuple(ROUTE_PATHS)
WITHOUT_OUTPUT = frozenset({"embeddings"})  # routes whose answers have no output tokens: nothing to hold or bill for

# What each provider kind can carry. An OpenAI-compatible API takes every route: chat as it is, the
# others natively or answered through chat (completions.py); the echo answers them all inside the process.
KIND_ROUTES: Mapping[str, frozenset[str]] = MappingProxyType({
    "openai": frozenset(ROUTES),
    "echo": frozenset(ROUTES),
    "anthropic": frozenset({"messages", "chat"}),  # its own Messages API, and chat translated to it (messages.py)
})  # fmt: skip


def read_routes(table: Table, kinds: Iterable[str]) -> frozenset[str] | None:
    """A model table's `routes`: the routes it may be called on (None: every route its channels carry).
    `kinds`: of the channels that list the model, enabled or not; a route none of them can carry is refused."""
    if "routes" not in table.data:
        return None
    names = table.strings("routes")
    if not names:
        raise table.error("routes", "must list at least one route (leave it out for every route its channels carry)")
    kinds = sorted(set(kinds))
    for i, name in enumerate(names):
        if name not in ROUTES:
            raise table.error(f"routes[{i}]", f"unknown route {quoted(name)}; the routes are {', '.join(ROUTES)}")
        if kinds and name not in carried(kinds, None):
            raise table.error(
                f"routes[{i}]", f"no channel serving it can carry {quoted(name)} (kinds: {', '.join(kinds)})"
            )
    return frozenset(names)


class _Carrier(Protocol):
    @property
    def kind(self) -> str: ...


C = TypeVar("C", bound=_Carrier)


def carried(kinds: Iterable[str], narrowed: frozenset[str] | None) -> tuple[str, ...]:
    """The routes channels of these kinds can carry between them, less those `narrowed` leaves out."""
    can = frozenset().union(*(KIND_ROUTES[kind] for kind in kinds))
    return tuple(route for route in ROUTES if route in can and (narrowed is None or route in narrowed))


def carriers_of(
    served: Mapping[str, Sequence[C]], narrowed: Mapping[str, frozenset[str] | None]
) -> tuple[dict[str, tuple[str, ...]], dict[tuple[str, str], tuple[C, ...]]]:
    """From the channels serving each model (in the order they are tried): the routes each model can be
    called on, and for each (route, model) the channels that can carry it, in the same order."""
    routes = {model: carried((c.kind for c in channels), narrowed.get(model)) for model, channels in served.items()}
    carriers = {
        (route, model): tuple(c for c in channels if route in KIND_ROUTES[c.kind])
        for model, channels in served.items()
        for route in routes[model]
    }
    return routes, carriers


def not_on_route(model: str, route: str, routes: Iterable[str]) -> ModelNotFound:
    """A model the key may use, called on a route it is not served on: say where it is served.
    (Auth has checked the key's allowlist, so this tells the caller nothing `GET /v1/models` does not.)"""
    served = ", ".join(ROUTE_PATHS[r] for r in routes)
    where = ROUTE_PATHS.get(route, route)
    return ModelNotFound(f"The model '{model}' is not served on {where}; it is served on {served}.", param="model")
