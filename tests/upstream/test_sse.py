"""SSE framing (upstream/sse.py): any split of a stream gives the same events, and no byte is lost or added."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenbridge.upstream.sse import EventSplitter, event_data

# Field values never hold a line break (the SSE grammar cannot carry one); anything else goes, ':' and unicode too.
_VALUE = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)
# The SSE spec's three line ends; every line of an event picks its own, so styles mix within an event.
_EOL = st.sampled_from(["\n", "\r\n", "\r"])
# After a bare CR a line end cannot be a bare LF: the two would read as one CRLF.
_AFTER_CR = st.sampled_from(["\r\n", "\r"])


@dataclass(frozen=True)
class _Event:
    raw: bytes
    data: bytes  # what event_data must return for it


@st.composite
def _events(draw: st.DrawFn) -> _Event:
    """One event: non-empty lines (data, comment, event, id, retry), each with its own line end, then a blank line."""
    lines: list[str] = []
    data: list[str] = []
    for kind in draw(st.lists(st.sampled_from(["data", "data", "comment", "event", "id", "retry"]), min_size=1)):
        value = draw(_VALUE)
        if kind == "data":
            lines.append("data:" + value)
            data.append(value[1:] if value.startswith(" ") else value)
        elif kind == "comment":
            lines.append(":" + value)
        else:
            lines.append(f"{kind}: {value}")
    text = "".join(line + draw(_EOL) for line in lines)
    text += draw(_AFTER_CR if text.endswith("\r") else _EOL)  # the blank line
    return _Event(text.encode(), "\n".join(data).encode())


@st.composite
def _tails(draw: st.DrawFn) -> bytes:
    """An event cut short: some lines, at most one line break at the end, so no blank line."""
    lines = draw(st.lists(_VALUE.map(lambda v: "data:" + v), max_size=3))
    text = "".join(line + draw(_EOL) for line in lines)
    ends_with_line_break = draw(st.booleans())
    if lines and not ends_with_line_break:
        text = text.rstrip("\r\n")
    return text.encode()


@st.composite
def _streams(draw: st.DrawFn) -> tuple[list[_Event], bytes, list[bytes]]:
    """Events plus a cut-short tail, and the stream split into chunks at any positions (down to single bytes)."""
    events = draw(st.lists(_events(), max_size=6))
    tail = draw(_tails())
    stream = b"".join(e.raw for e in events) + tail
    cuts = sorted(draw(st.sets(st.integers(0, len(stream)))))
    bounds = [0, *cuts, len(stream)]
    return events, tail, [stream[a:b] for a, b in zip(bounds, bounds[1:])]


def _split(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    splitter = EventSplitter()
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(splitter.feed(chunk))
    return out, splitter.tail


def _expected(events: list[_Event], tail: bytes) -> tuple[list[bytes], bytes]:
    """The events and tail a splitter gives for the whole stream. A last event whose blank line's CR
    follows a CRLF line waits for that CR's LF, so with nothing after it, it is still the tail."""
    raws = [e.raw for e in events]
    if not tail and raws and raws[-1].endswith(b"\r\n\r"):
        return raws[:-1], raws[-1]
    return raws, tail


def _merged(events: list[bytes]) -> list[bytes]:
    """The events with a lone LF put back on the event before it. A blank line's CR that ends what has
    arrived ends its event at once (unless the line before ended in CRLF: then its LF is surely
    coming). If an LF follows after all, it is the rest of that CRLF and comes out on its own."""
    merged: list[bytes] = []
    for event in events:
        if event == b"\n" and merged and merged[-1].endswith(b"\r"):
            merged[-1] += event
        else:
            merged.append(event)
    return merged


@settings(max_examples=300, deadline=None)
@given(_streams())
def test_event_splitter_same_events_for_any_split(stream: tuple[list[_Event], bytes, list[bytes]]) -> None:
    events, tail, chunks = stream
    whole = b"".join(chunks)

    split_events, split_tail = _split(chunks)
    whole_events, whole_tail = _split([whole])

    expected_events, expected_tail = _expected(events, tail)
    assert whole_events == expected_events
    assert _merged(split_events) == whole_events
    assert split_tail == whole_tail == expected_tail
    assert b"".join(split_events) + split_tail == whole
    assert [event_data(e) for e in _merged(split_events)] == [e.data for e in events][: len(expected_events)]


@settings(max_examples=50, deadline=None)
@given(st.lists(_events(), min_size=1, max_size=4), _tails())
def test_event_splitter_same_events_when_fed_one_byte_at_a_time(events: list[_Event], tail: bytes) -> None:
    stream = b"".join(e.raw for e in events) + tail
    split_events, split_tail = _split([stream[i : i + 1] for i in range(len(stream))])
    assert (_merged(split_events), split_tail) == _expected(events, tail)


def test_event_splitter_holds_event_until_blank_line_arrives() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: a\r\n\r") == []
    assert splitter.tail == b"data: a\r\n\r"
    assert splitter.feed(b"\ndata: b\n") == [b"data: a\r\n\r\n"]
    assert splitter.tail == b"data: b\n"
    assert splitter.feed(b"\n") == [b"data: b\n\n"]
    assert splitter.tail == b""


def test_event_splitter_splits_at_the_earlier_terminator_when_styles_mix() -> None:
    stream = b"data: a\n\ndata: b\r\n\r\ndata: c\n\n"
    assert EventSplitter().feed(stream) == [b"data: a\n\n", b"data: b\r\n\r\n", b"data: c\n\n"]


def test_event_splitter_splits_bare_cr_events() -> None:
    # Valid SSE: some servers end every line with a bare CR.
    stream = b"data: a\r\rdata: b\rdata: c\r\rdata: [DONE]\r\r"
    events = EventSplitter().feed(stream)
    assert events == [b"data: a\r\r", b"data: b\rdata: c\r\r", b"data: [DONE]\r\r"]
    assert [event_data(e) for e in events] == [b"a", b"b\nc", b"[DONE]"]


@pytest.mark.parametrize(
    "blank_line", [b"\n\n", b"\r\r", b"\r\n\r\n", b"\n\r\n", b"\r\n\n", b"\r\r\n", b"\n\r", b"\r\n\r"]
)
def test_event_splitter_ends_an_event_at_a_blank_line_of_any_line_end_mix(blank_line: bytes) -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: a" + blank_line + b"data: b\n\n") == [b"data: a" + blank_line, b"data: b\n\n"]
    assert splitter.tail == b""


def test_event_splitter_releases_a_bare_cr_event_before_the_next_byte_arrives() -> None:
    # Waiting for the byte after the CR (is it a CRLF?) would hold each event of a bare-CR stream
    # until the next one: the blank line has begun, so the event is complete either way.
    splitter = EventSplitter()
    assert splitter.feed(b"data: a\r\r") == [b"data: a\r\r"]
    assert splitter.feed(b"data: b\n\r") == [b"data: b\n\r"]
    assert splitter.feed(b"\ndata: c\r\r") == [b"\n", b"data: c\r\r"]  # the rest of a CRLF, on its own
    assert splitter.tail == b""


def test_event_splitter_holds_a_line_ending_cr_until_the_next_byte() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: a\r") == []  # CR or CRLF: the next byte says
    assert splitter.feed(b"\n") == []
    assert splitter.feed(b"\r\n") == [b"data: a\r\n\r\n"]


class _CountingBytes(bytes):
    """Bytes that add up how far each find() looked: the splitter's scanning work."""

    scanned = 0

    def find(self, sub: Any, start: Any = None, end: Any = None) -> int:
        found = super().find(sub, start, end)
        stop = (len(self) if end is None else end) if found < 0 else found + len(sub)
        _CountingBytes.scanned += stop - (start or 0)
        return found


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_event_splitter_scans_each_byte_a_bounded_number_of_times(eol: bytes) -> None:
    # 5,000 events in one read, as a fast upstream's buffer holds them: looking for each kind of
    # blank line again from every event's start read the whole rest of the buffer once per event.
    event = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}' + eol * 2
    data = _CountingBytes(event * 5_000)
    _CountingBytes.scanned = 0
    events = EventSplitter().feed(data)
    assert len(events) == 5_000
    assert _CountingBytes.scanned <= 3 * len(data)


def test_event_data_joins_data_lines_with_newline() -> None:
    assert event_data(b"data: first\ndata: second\ndata:third\n\n") == b"first\nsecond\nthird"


def test_event_data_drops_only_one_leading_space() -> None:
    assert event_data(b"data:  two spaces\n\n") == b" two spaces"
    assert event_data(b"data:no space\n\n") == b"no space"


def test_event_data_ignores_comments_event_and_id_lines() -> None:
    event = b': keep-alive\r\nevent: message\r\nid: 7\r\ndata: {"a":1}\r\nretry: 10\r\n\r\n'
    assert event_data(event) == b'{"a":1}'


def test_event_data_empty_when_event_has_no_data_lines() -> None:
    assert event_data(b": just a comment\n\n") == b""
