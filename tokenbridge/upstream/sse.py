"""Incremental SSE framing: bytes in, whole events out (pure, no I/O).

Upstream bytes arrive split anywhere (a TCP read can end mid-line). `EventSplitter.feed` returns
the events completed by the new bytes, each exactly as received including its blank-line
terminator, so joining what it returns (plus `tail`) gives back the input byte for byte.

Lines end in CRLF, LF or a bare CR, as the SSE spec allows, mixed as they come; an event ends at
the first blank line. Each byte is searched once: a read holding thousands of events costs time in
proportion to its size (looking for `\\n\\n` and `\\r\\n\\r\\n` again from each event's start, when
one of them never comes, read the rest of the buffer once per event).
"""

from __future__ import annotations

import orjson

MAX_EVENT_BYTES = 1 << 20  # one event larger than this is not held: the splitter gives up on it

_LF = 10  # b"\n"[0]


class EventSplitter:
    """Split a byte stream into SSE events at blank lines."""

    __slots__ = ("_held", "_line", "_scan")

    def __init__(self) -> None:
        self._held = bytearray()  # bytes of an event not yet complete (a bytearray: appending is cheap)
        self._line = 0  # where in _held its unfinished line starts
        self._scan = 0  # where in _held the search for a line end goes on

    @property
    def held(self) -> int:
        """How many bytes wait for their blank line."""
        return len(self._held)

    @property
    def tail(self) -> bytes:
        """The bytes of an event not yet complete."""
        return bytes(self._held)

    def take_tail(self) -> bytes:
        """The bytes of an event not yet complete, forgotten: the next byte starts a new event."""
        tail = bytes(self._held)
        self._held.clear()
        self._line = self._scan = 0
        return tail

    def feed(self, data: bytes) -> list[bytes]:
        held = bool(self._held)
        if held:
            self._held += data
        buf = self._held if held else data  # the common case, whole events in: no copy
        events: list[bytes] = []
        start, line, pos, size = 0, self._line, self._scan, len(buf)
        # The next LF and CR at or after pos, -1 once there is none: each is searched for again only
        # when pos has passed it, so every byte is looked at once for each.
        lf, cr = buf.find(b"\n", pos), buf.find(b"\r", pos)
        while lf >= 0 or cr >= 0:
            if cr < 0 or 0 <= lf < cr:
                end, after = lf, lf + 1
            elif cr + 1 < size:
                end, after = cr, cr + 2 if buf[cr + 1] == _LF else cr + 1
            elif cr == line and buf[cr - 2 : cr] != b"\r\n":
                # A blank line's CR, last of what has arrived: the event is complete whatever follows.
                # (Waiting for the next byte would hold each event of a bare-CR stream until the next
                # one.) After a CRLF line the blank line's LF is surely coming: wait, keep it whole.
                end, after = cr, cr + 1
            else:  # a CR ending what has arrived: a CR or a CRLF? The next byte says.
                pos = cr
                break
            if end == line:  # a blank line: the event ends with it
                events.append(bytes(buf[start:after]) if held else buf[start:after])
                start = after
            line = pos = after
            if 0 <= lf < pos:
                lf = buf.find(b"\n", pos)
            if 0 <= cr < pos:
                cr = buf.find(b"\r", pos)
        else:
            pos = size
        if held:
            del self._held[:start]
        elif start < size:
            self._held += memoryview(data)[start:]
        self._line, self._scan = line - start, pos - start
        return events


def event_data(event: bytes) -> bytes:
    """The event's data: its `data:` lines, one leading space dropped, joined with `\\n` (per the SSE spec)."""
    parts = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(parts)


# A chunk as OpenAI sends it: one `data: {...}` line and a blank line (Anthropic's: after an `event:`
# line). Such an event is taken as readable without parsing it (the meter parses only usage events);
# anything else is looked at closer.
_OBJECT_EVENT_ENDS = (b"}\n\n", b"}\r\n\r\n", b"}\r\r")


def readable_event(event: bytes) -> bool:
    """Whether an OpenAI client can read this event: data that is a JSON object or `[DONE]`, or no
    data at all (a comment, a keep-alive). An SDK meeting anything else fails with a parse error of
    its own, which blames neither the upstream nor the gateway; the gateway ends the stream with an
    error event instead."""
    if event.endswith(_OBJECT_EVENT_ENDS) and (
        event.startswith(b"data: {") or (event.startswith(b"event: ") and b"\ndata: {" in event)
    ):
        return True
    data = event_data(event).strip()
    if not data or data == b"[DONE]":
        return True
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False
