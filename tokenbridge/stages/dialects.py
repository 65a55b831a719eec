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
    asks_usage: bool = True  # a stream carries usage only if asked (`stream_options.include_usage`): the proxy asks


CHAT = Dialect(stream=SseTap, usage=usage_from, texts=answer_texts)
RESPONSES = Dialect(
    stream=responses_tap.ResponsesTap,
    usage=responses_tap.usage_from,
    texts=responses_tap.answer_texts,
    end="response.completed",
    asks_usage=False,  # its end event always carries usage, and /responses knows no stream_options.include_usage
)

DIALECTS: Mapping[str, Dialect] = MappingProxyType({"chat": CHAT, "completions": CHAT, "responses": RESPONSES})


def dialect_of(wire: str) -> Dialect:
    """The wire's dialect; chat where no channel was reached (its answers are our own errors)."""
    return DIALECTS.get(wire, CHAT)
