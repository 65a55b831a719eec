"""Mapping: the public model name -> the channels to try, in order.

Candidates are the enabled channels that list the model and can carry the call's route (precomputed
per config in `Settings.carriers`, highest priority first; routing.py) whose circuit for the model is not open; among channels
of equal priority the order is a weighted random draw by `weight`, so load spreads as configured.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from tokenbridge.asgi import ASGIApp, Receive, Scope, Send
from tokenbridge.call import get_call
from tokenbridge.errors import NoAvailableChannel, unknown_model
from tokenbridge.routing import not_on_route
from tokenbridge.settings import Channel
from tokenbridge.upstream.breaker import Breakers


def weighted_order(channels: Sequence[Channel], rng: random.Random) -> tuple[Channel, ...]:
    """Order channels by priority (desc); among equals, a weighted draw without replacement."""
    ordered: list[Channel] = []
    i = 0
    while i < len(channels):
        j = i
        while j < len(channels) and channels[j].priority == channels[i].priority:
            j += 1
        tier = list(channels[i:j])
        while len(tier) > 1:
            pick = rng.choices(range(len(tier)), weights=[c.weight for c in tier])[0]
            ordered.append(tier.pop(pick))
        ordered.extend(tier)
        i = j
    return tuple(ordered)


class MappingMiddleware:
    """Writes call.candidates; refuses with 404 model_not_found (no channel serves the model on this route),
    or 503 when every circuit is open."""

    def __init__(self, app: ASGIApp, *, rng: random.Random, breakers: Breakers) -> None:
        self.app = app
        self.rng = rng
        self.breakers = breakers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = get_call(scope)
        channels = call.settings.carriers.get((call.route, call.model))
        if not channels:
            routes = call.settings.model_routes.get(call.model)
            raise unknown_model(call.model) if not routes else not_on_route(call.model, call.route, routes)
        available = self.breakers.available
        usable = [c for c in channels if available(c.name, call.model)]
        if not usable:
            retry_in = self.breakers.retry_in((c.name for c in channels), call.model)
            raise NoAvailableChannel(call.model, retry_in_s=retry_in)
        call.candidates = tuple(usable) if len(usable) == 1 else weighted_order(usable, self.rng)
        await self.app(scope, receive, send)
