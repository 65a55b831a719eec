"""The stream meter's own cost, with no server: what the meter does per read, and what a long stream leaves.

    .venv/bin/python bench/stream_tap.py

Feeds `SseTap` (stages/meter.py) chat chunks as an upstream sends them and prints, for one process:
the time per read of one event (the common case: streams of 500 events; and one long stream),
per read of 400 and 8,000 events (a fast upstream's buffer), the bytes a 12 MB stream leaves held
for its estimate (traced allocations), and what reading it for an estimate costs (`texts()`,
which the meter runs in a worker thread).
Issue 11, item 14: 8,000 events in one read took 3.8 s, and each stream kept up to 8 MB.
"""

from __future__ import annotations

import time
import tracemalloc

import orjson

from tokenbridge.stages.chat_tap import SseTap


def event(text: str) -> bytes:
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        "usage": None,
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def per_read_us(data: bytes, reads: int, *, per_stream: int) -> float:
    """Best of five: the time of one read, each tap fed `per_stream` reads (a stream), then a new one."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for i in range(reads):
            if i % per_stream == 0:
                tap = SseTap(strip=True)
            tap.feed(data)
        best = min(best, (time.perf_counter() - start) / reads)
    return best * 1e6


def long_stream(total: int) -> tuple[SseTap, int]:
    read = event(" word") * 400
    tap = SseTap(strip=True)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(total // len(read)):
        tap.feed(read)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return tap, held


def main() -> None:
    one = event(" word")
    print(f"one event per read, 500-event streams:    {per_read_us(one, 20_000, per_stream=500):8.2f} us per read")
    print(f"one event per read, 20,000-event stream:  {per_read_us(one, 20_000, per_stream=20_000):8.2f} us per read")
    print(f"400 events per read:  {per_read_us(one * 400, 200, per_stream=200):8.1f} us per read")
    print(f"8,000 events per read:{per_read_us(one * 8_000, 5, per_stream=5):8.0f} us per read")
    tap, held = long_stream(12 << 20)
    print(f"12 MB stream, held for its estimate: {held / (1 << 20):.2f} MiB")
    start = time.perf_counter()
    chars = len("".join(tap.texts()))
    print(f"end of stream, texts() for an estimate: {(time.perf_counter() - start) * 1e3:.2f} ms ({chars:,} chars)")


if __name__ == "__main__":
    main()
