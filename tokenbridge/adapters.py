"""Adapters: how a call on one route is answered by a channel that speaks one wire.

A route is what the caller called (`chat`, `completions`, ...); a wire is what a channel is spoken
to in, named the same way (`chat` is `/chat/completions`, `completions` is `/completions`). Each
route says, per channel, which wire it takes there (`WIRES`), and each (route, wire) pair has one
`Adapter`: the path under the channel's base_url, and the translations between the two shapes, or
none where the caller's bytes pass through untouched. The shape stage runs the translations; the
proxy reads the path; the meter reads the wire's own shape (its dialect), whatever the route.

Adding a route or a wire is adding rows here, not branches in the stages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from tokenbridge import messages, responses
from tokenbridge.call import Call, caller_wants_usage
from tokenbridge.chat_messages import chat_response, messages_request
from tokenbridge.chat_messages_stream import ChatEvents
from tokenbridge.completions import chat_request, completion_response, translate_event
from tokenbridge.messages_stream import MessagesEvents
from tokenbridge.responses_answer import response_from_chat
from tokenbridge.responses_stream import ResponsesEvents
from tokenbridge.settings import Channel
from tokenbridge.upstream.client import speaks_messages, takes_completions, takes_responses

Body = dict[str, Any]


class EventTranslator(Protocol):
    """Translates one stream, one whole SSE event at a time (it may keep state between events)."""

    def translate(self, event: bytes) -> bytes:
        """One whole upstream event (its blank line included) -> the bytes the caller gets for it (b"": none)."""
        ...


@dataclass(frozen=True, slots=True)
class Adapter:
    """One (route, wire) pair. Every translation is None where the caller's shape is the wire's."""

    path: str  # under the channel's base_url
    request: Callable[[Body], Body] | None = None  # the caller's body -> the wire's; raises InvalidRequest
    answer: Callable[[Body], Body] | None = None  # the wire's JSON answer -> the caller's
    events: Callable[[Call], EventTranslator] | None = None  # a translator for one stream of this call
    # The caller's headers (lower-case names) sent on to the channel; every other header stays with us.
    forward: frozenset[bytes] = frozenset()
    # A stream on this wire carries usage only when asked (`stream_options.include_usage`, added by the
    # proxy); False for a wire whose streams always do and that refuses the field (Anthropic's).
    ask_usage: bool = True
    # The wire requires a completion limit (Anthropic's `max_tokens`): a body that sets none is given
    # the server's `default_max_tokens` before `request` runs, the limit the hold reckons with (quota.py).
    limit_required: bool = False
    # As `answer`, for a translation that needs the caller's request too (the Responses shape echoes it)
    answers: Callable[[Call], Callable[[Body], Body]] | None = None

    @property
    def translates(self) -> bool:
        return self.answer is not None or self.events is not None or self.answers is not None

    def answer_for(self, call: Call) -> Callable[[Body], Body] | None:
        return self.answers(call) if self.answers is not None else self.answer


class Stateless:
    """An EventTranslator from a pure function of one event."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[[bytes], bytes]) -> None:
        self.function = function

    def translate(self, event: bytes) -> bytes:
        return self.function(event)


def _completions_events(call: Call) -> EventTranslator:
    return Stateless(translate_event)


def _chat_events(call: Call) -> EventTranslator:
    return ChatEvents(include_usage=caller_wants_usage(call.body), secret=_secret(call))


def _secret(call: Call) -> str:
    return call.channel.api_key if call.channel is not None else ""


def _messages_events(call: Call) -> EventTranslator:
    return MessagesEvents(call.model, secret=_secret(call))


# What a native Messages channel is told of the caller's request beyond its body (upstream/anthropic.py).
ANTHROPIC_HEADERS = frozenset({b"anthropic-version", b"anthropic-beta"})


def _responses_answers(call: Call) -> Callable[[Body], Body]:
    return lambda chat: response_from_chat(chat, call.body)


def _responses_events(call: Call) -> EventTranslator:
    return ResponsesEvents(call.body, secret=_secret(call))


ADAPTERS: Mapping[tuple[str, str], Adapter] = MappingProxyType(
    {
        ("chat", "chat"): Adapter("/chat/completions"),
        ("completions", "completions"): Adapter("/completions"),
        ("embeddings", "embeddings"): Adapter("/embeddings"),
        ("completions", "chat"): Adapter(
            "/chat/completions", request=chat_request, answer=completion_response, events=_completions_events
        ),
        ("chat", "messages"): Adapter(
            "/messages",
            request=messages_request,
            answer=chat_response,
            events=_chat_events,
            ask_usage=False,
            limit_required=True,
        ),
        ("messages", "messages"): Adapter("/messages", forward=ANTHROPIC_HEADERS, ask_usage=False),
        ("messages", "chat"): Adapter(
            "/chat/completions",
            request=messages.chat_request,
            answer=messages.message_response,
            events=_messages_events,
        ),
        # Responses' streams always end with their usage, and /responses knows no stream_options.
        ("responses", "responses"): Adapter("/responses", ask_usage=False),
        ("responses", "chat"): Adapter(
            "/chat/completions", request=responses.chat_request, answers=_responses_answers, events=_responses_events
        ),
    }
)

# Per route: the wire a channel is spoken to in for it.
WIRES: Mapping[str, Callable[[Channel], str]] = MappingProxyType(
    {
        "chat": lambda channel: "messages" if speaks_messages(channel) else "chat",
        "completions": lambda channel: "completions" if takes_completions(channel) else "chat",
        "embeddings": lambda channel: "embeddings",
        "messages": lambda channel: "messages" if speaks_messages(channel) else "chat",
        "responses": lambda channel: "responses" if takes_responses(channel) else "chat",
    }
)

ROUTES = frozenset(WIRES)
_TRANSLATED_ROUTES = frozenset(route for (route, _), adapter in ADAPTERS.items() if adapter.request is not None)


def wire_for(route: str, channel: Channel) -> str:
    return WIRES[route](channel)


def adapter_for(route: str, channel: Channel) -> Adapter:
    return ADAPTERS[(route, wire_for(route, channel))]


def upstream_bodies(call: Call) -> dict[str, Body]:
    """The body each wire among the call's candidates is sent, translated once per wire.

    Every translation runs before any channel is tried, so a field one of them refuses is refused
    whichever channel would have answered: failover never changes what the caller gets.
    """
    bodies: dict[str, Body] = {}
    if call.route not in _TRANSLATED_ROUTES:
        return bodies  # every wire of this route takes the caller's body as it is
    for channel in call.candidates:
        wire = wire_for(call.route, channel)
        if wire not in bodies:
            adapter = ADAPTERS[(call.route, wire)]
            body = call.body
            if adapter.limit_required and not (body.get("max_tokens") or body.get("max_completion_tokens")):
                body = {**body, "max_tokens": call.settings.server.default_max_tokens}
            bodies[wire] = body if adapter.request is None else adapter.request(body)
    return bodies
