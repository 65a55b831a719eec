"""SSE framing (upstream/sse.py): any split of a stream gives the same events, and no byte is lost or added."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from tokenbridge.upstream.sse import EventSplitter, event_data

# Field values never hold a line break (the SSE grammar cannot carry one); anything else goes, ':' and unicode too.
_VALUE = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)
_EOL = st.sampled_from(["\n", "\r\n"])


@dataclass(frozen=True)
class _Event:
    raw: bytes
    data: bytes  # what event_data must return for it


@st.composite
def _events(draw: st.DrawFn) -> _Event:
    """One event: non-empty lines (data, comment, event, id, retry), ended by a blank line in one line-ending style."""
    eol = draw(_EOL)
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
    return _Event("".join(line + eol for line in lines).encode() + eol.encode(), "\n".join(data).encode())


@st.composite
def _tails(draw: st.DrawFn) -> bytes:
    """An event cut short: some lines, at most one line break at the end, so no blank line."""
    eol = draw(_EOL)
    lines = draw(st.lists(_VALUE.map(lambda v: "data:" + v), max_size=3))
    text = eol.join(lines)
    ends_with_line_break = draw(st.booleans())
    if lines and ends_with_line_break:
        text += eol
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


@settings(max_examples=300, deadline=None)
@given(_streams())
def test_event_splitter_same_events_for_any_split(stream: tuple[list[_Event], bytes, list[bytes]]) -> None:
    events, tail, chunks = stream
    whole = b"".join(chunks)

    split_events, split_tail = _split(chunks)
    whole_events, whole_tail = _split([whole])

    assert split_events == whole_events == [e.raw for e in events]
    assert split_tail == whole_tail == tail
    assert b"".join(split_events) + split_tail == whole
    assert [event_data(e) for e in split_events] == [e.data for e in events]


@settings(max_examples=50, deadline=None)
@given(st.lists(_events(), min_size=1, max_size=4), _tails())
def test_event_splitter_same_events_when_fed_one_byte_at_a_time(events: list[_Event], tail: bytes) -> None:
    stream = b"".join(e.raw for e in events) + tail
    split_events, split_tail = _split([stream[i : i + 1] for i in range(len(stream))])
    assert split_events == [e.raw for e in events]
    assert split_tail == tail


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
