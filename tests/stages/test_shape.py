"""The shape stage's SSE translation: event for event, whatever the byte boundaries."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenbridge.adapters import Stateless
from tokenbridge.completions import translate_event
from tokenbridge.stages.shape import SseTranslator
from tokenbridge.upstream.sse import EventSplitter, event_data


def chat_stream(pieces: list[str], *, usage: bool, crlf: bool) -> bytes:
    end = b"\r\n\r\n" if crlf else b"\n\n"

    def event(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> bytes:
        chunk = {"id": "chatcmpl-p", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices}
        return b"data: " + orjson.dumps({**chunk, **(extra or {})}) + end

    out = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    out += [event([{"index": 0, "delta": {"content": p}, "finish_reason": None}]) for p in pieces]
    out.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if usage:
        out.append(event([], {"usage": {"prompt_tokens": 3, "completion_tokens": len(pieces), "total_tokens": 9}}))
    out.append(b"data: [DONE]" + end)
    return b"".join(out)


def translate_in(chunks: list[bytes]) -> bytes:
    translator = SseTranslator(Stateless(translate_event))
    return b"".join(translator.feed(chunk) for chunk in chunks)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.text(min_size=1, max_size=8), max_size=6),
    usage=st.booleans(),
    crlf=st.booleans(),
    cuts=st.lists(st.integers(min_value=0), max_size=40),
)
def test_shape_sse_any_split_translates_to_the_same_events(
    pieces: list[str], usage: bool, crlf: bool, cuts: list[int]
) -> None:
    stream = chat_stream(pieces, usage=usage, crlf=crlf)
    whole = translate_in([stream])
    assert translate_in(split(stream, cuts)) == whole
    bytewise = translate_in([stream[i : i + 1] for i in range(len(stream))])
    assert bytewise == whole
    splitter = EventSplitter()
    events = [event_data(e) for e in splitter.feed(whole)]
    assert splitter.tail == b"" and events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "".join(pieces)
    assert all(c["object"] == "text_completion" and c["id"] == "cmpl-p" for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert ("usage" in chunks[-1]) is usage
