"""Dialects: how the meter reads each wire's answers (adapters.py names the wires).

A dialect gives the meter a tap for a stream (it passes the events through, notes the usage and
the end event, keeps what an estimate needs) and two readers for a JSON answer: its usage and its
answer text. A new wire is a new row here, with its tap in a module of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from tokenbridge.money import Usage
from tokenbridge.stages import responses_tap
from tokenbridge.stages.chat_tap import SseTap, answer_texts, usage_from
from tokenbridge.stages.messages_tap import MessagesTap, message_texts, usage_from_message


class StreamTap(Protocol):
    """Reads one stream on its way to the caller (chat_tap.SseTap is the model)."""

    usage: Usage | None  # the upstream's own count, once an event carried it
    done: bool  # the wire's end event went by: the answer is whole
    fault: str | None  # the start of an event no client could read: the stream ends before it

    def feed(self, data: bytes) -> bytes:
        """The bytes to pass on for `data` (whole events only; an edit where the wire needs one)."""
        ...

    def finish(self) -> bytes:
        """At the end of the stream: what is left to pass on."""
        ...

    def texts(self) -> list[str]:
        """The answer text delivered so far, for an estimate (called in a worker thread)."""
        ...


@dataclass(frozen=True, slots=True)
class Dialect:
    stream: Callable[..., StreamTap]  # (strip=: cut a usage event the caller did not ask for, request_id=)
    usage: Callable[[Any], Usage | None]  # a parsed JSON answer -> its usage, None when absent or impossible
    texts: Callable[[Any], list[str]]  # a parsed JSON answer -> its answer text
    end: str = "[DONE]"  # the end event of a whole stream, as errors and logs name it


CHAT = Dialect(stream=SseTap, usage=usage_from, texts=answer_texts)
MESSAGES = Dialect(stream=MessagesTap, usage=usage_from_message, texts=message_texts, end="message_stop")
# An embeddings answer has no output: its usage has no completion_tokens, and there is no text to count.
EMBEDDINGS = Dialect(stream=SseTap, usage=lambda payload: usage_from(payload, output=False), texts=lambda payload: [])

RESPONSES = Dialect(
    stream=responses_tap.ResponsesTap,
    usage=responses_tap.usage_from,
    texts=responses_tap.answer_texts,
    end="response.completed",
)

DIALECTS: Mapping[str, Dialect] = MappingProxyType(
    {"chat": CHAT, "completions": CHAT, "embeddings": EMBEDDINGS, "messages": MESSAGES, "responses": RESPONSES}
)


def dialect_of(wire: str) -> Dialect:
    """The wire's dialect (the meter passes the route where no channel was reached); chat for any other."""
    return DIALECTS.get(wire, CHAT)
