"""Channels on the account API, the admin's: `GET /api/channels` (each channel with its circuit
breakers' states and its health in plain words) and `POST /api/channels/{name}/test` (one real
probe through the channel: upstream/probe.py's smallest request, answered with a verdict).

Health words are for a person, beside the breaker state kept for programs: "closed" is a working
channel, "open" one the gateway has paused after failures, "half_open" one being tried again.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tokenbridge.api.auth import authenticate
from tokenbridge.api.responses import json_response, listing
from tokenbridge.autherrors import UnknownChannel
from tokenbridge.money import clip
from tokenbridge.runtime import Runtime
from tokenbridge.store.channels import list_channel_health
from tokenbridge.upstream.probe import ProbeResult, probe


def circuit_health(state: str, retry_in_s: float) -> str:
    """One model's circuit in words."""
    if state == "open":
        return f"Paused after failures: requests go to other channels; tried again in {round(retry_in_s)}s"
    if state == "half_open":
        return "Recovering: one trial request is let through to see whether it works again"
    return "Working"


def channel_health(states: list[str]) -> str:
    """A channel's circuits summed up in words."""
    down = sum(state != "closed" for state in states)
    if not down:
        return "Working normally"
    if down == len(states):
        return "Down: paused after failures for every model; the gateway tries it again by itself"
    return f"Partly down: {down} of {len(states)} models paused after failures"


def verdict(result: ProbeResult) -> str:
    """A probe's answer in words an operator acts on."""
    if result.ok:
        return f"Working: the provider answered in {result.latency_ms:.0f} ms."
    status = result.status
    if status in ("HTTP 401", "HTTP 403"):
        return f"The provider refused this channel's credentials ({status}): check its API key."
    if status == "HTTP 404":
        return "The provider does not know this channel's model or path (HTTP 404): check its base URL and models."
    if status == "HTTP 429":
        return "The provider is rate limiting this channel (HTTP 429): it works, but is busy or out of credit."
    if status.startswith("HTTP 5"):
        return f"The provider has a problem of its own ({status}): try again later."
    if status.startswith("timeout"):
        return f"No answer in time ({status.removeprefix('timeout: ')}): the provider is slow or unreachable."
    if "did not answer in time" in status:
        return "No answer in time: the provider is slow or unreachable."
    if "could not be reached" in status:
        return "Cannot reach the provider: check the channel's base URL, and that the provider is up."
    return f"Failed: {status}"


class ChannelsAPI:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/channels", self.channels, methods=["GET"]),
            Route("/api/channels/{name}/test", self.test, methods=["POST"]),
        ]

    async def admin(self, request: Request) -> None:
        principal = await authenticate(self.runtime, request)
        principal.require_admin()
        principal.require_writer()

    async def channels(self, request: Request) -> Response:
        """Channels as configured, each model's circuit as this process's breakers see it now, or as the
        database last recorded it (every worker writes there, as `tokenbridge channels check` reads it)."""
        (await authenticate(self.runtime, request)).require_admin()
        health = {(h["channel"], h["model"]): h for h in await list_channel_health(self.runtime.db)}
        now = time.time()
        data = []
        for channel in self.runtime.settings.channels:
            circuits = []
            for model in channel.models:
                stored = health.get((channel.name, model))
                state = self.runtime.breakers.state(channel.name, model)
                if state == "closed" and stored:
                    state = stored["state"]
                reason, retry = "", 0.0
                if stored is not None and stored["state"] == state != "closed":
                    reason = stored["reason"]
                    retry = stored["changed_at"] + stored["retry_in_s"] - now if state == "open" else 0.0
                retry = round(max(0, retry), 3)
                circuits.append({
                    "model": model, "state": state, "reason": reason, "retry_in_s": retry,
                    "health": circuit_health(state, retry),
                })  # fmt: skip
            data.append({
                "name": channel.name,
                "kind": channel.kind,
                "models": list(channel.models),
                "priority": channel.priority,
                "weight": channel.weight,
                "display_url": channel.display_url or None,
                "enabled": channel.enabled,
                "health": channel_health([c["state"] for c in circuits]) if channel.enabled else "Turned off in the config",
                "circuits": circuits,
            })  # fmt: skip
        return listing(data)

    async def test(self, request: Request) -> Response:
        """One probe through the channel, now; it does not move the channel's breakers."""
        await self.admin(request)
        name = request.path_params["name"]
        channel = next((c for c in self.runtime.settings.channels if c.name == name), None)
        if channel is None:
            raise UnknownChannel(f"No channel named {clip(name)}.", param="name")
        result = await probe(self.runtime.upstream, channel)
        answer: dict[str, Any] = {
            "channel": channel.name,
            "model": channel.models[0],
            "ok": result.ok,
            "status": result.status,
            "latency_ms": result.latency_ms,
            "verdict": verdict(result),
        }
        return json_response(answer)
