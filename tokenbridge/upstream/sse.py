"""Incremental SSE framing: bytes in, whole events out (pure, no I/O).

Upstream bytes arrive split anywhere (a TCP read can end mid-line). `EventSplitter.feed` returns
the events completed by the new bytes, each exactly as received including its blank-line
terminator, so joining what it returns (plus `tail`) gives back the input byte for byte.
"""

from __future__ import annotations

MAX_EVENT_BYTES = 1 << 20  # one event larger than this is not held: the splitter gives up on it


class EventSplitter:
    """Split a byte stream into SSE events at blank lines (`\\n\\n` or `\\r\\n\\r\\n`)."""

    __slots__ = ("tail",)

    def __init__(self) -> None:
        self.tail = b""  # bytes of an event not yet complete

    def feed(self, data: bytes) -> list[bytes]:
        buf = self.tail + data if self.tail else data
        events: list[bytes] = []
        start = 0
        while True:
            end = _event_end(buf, start)
            if end < 0:
                break
            events.append(buf[start:end])
            start = end
        self.tail = buf[start:]
        return events


def _event_end(buf: bytes, start: int) -> int:
    """Index just past the blank line that ends the event starting at `start`, or -1."""
    lf = buf.find(b"\n\n", start)
    crlf = buf.find(b"\r\n\r\n", start)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf + 4
    return lf + 2 if lf >= 0 else -1


def event_data(event: bytes) -> bytes:
    """The event's data: its `data:` lines, one leading space dropped, joined with `\\n` (per the SSE spec)."""
    parts = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(parts)
