"""The log set-up's hot-path parts: the access line's logfmt, the once-a-second time, one write per loop pass."""

from __future__ import annotations

import asyncio
import io
import logging
import threading

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tokenbridge.logs import TEXT_FORMAT, AccessLine, JsonFormatter, LineHandler, TextFormatter, logfmt_value


@given(st.text(max_size=250) | st.sampled_from(["", "a", "/v1/chat/completions", "127.0.0.1", "-", "a b"]))
def test_an_access_lines_string_field_reads_as_logfmt_value_says(value: str) -> None:
    assert str(AccessLine({"f": value, "n": 3, "x": 1.5, "none": None, "yes": True})) == (
        f"f={logfmt_value(value)} n=3 x=1.5 none=- yes=true"
    )


def record(created: float, message: str = "hello %s", args: tuple[object, ...] = ("there",)) -> logging.LogRecord:
    rec = logging.LogRecord("tokenbridge", logging.INFO, __file__, 1, message, args, None)
    rec.created, rec.msecs = created, (created - int(created)) * 1000 // 1
    return rec


def test_the_text_formatter_writes_what_loggings_own_writes_at_each_second() -> None:
    ours, theirs = TextFormatter(), logging.Formatter(TEXT_FORMAT)
    for created in (1_764_000_000.123, 1_764_000_000.999, 1_764_000_001.0, 1_764_003_600.5, 1_764_000_000.25):
        assert ours.format(record(created)) == theirs.format(record(created))


def test_the_json_formatter_formats_each_records_own_second() -> None:
    json = JsonFormatter()
    times = [orjson.loads(json.format(record(t)))["time"] for t in (1_764_000_000.5, 1_764_000_001.25, 1_764_000_000.0)]
    assert times == ["2025-11-24T16:00:00.500Z", "2025-11-24T16:00:01.250Z", "2025-11-24T16:00:00.000Z"]


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def handler_logger(stream: CountingStream) -> tuple[LineHandler, logging.Logger]:
    handler = LineHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.Logger("test-lines")  # not in logging's tree: no other handler sees it
    logger.addHandler(handler)
    return handler, logger


def test_lines_of_one_loop_pass_leave_in_one_write_at_the_next_pass_in_order() -> None:
    stream = CountingStream()
    _, logger = handler_logger(stream)

    async def main() -> list[str]:
        for i in range(5):
            logger.warning("line %d", i)
        seen_before = list(stream.writes)  # nothing written inside the pass that logged
        await asyncio.sleep(0)  # the next pass
        await asyncio.sleep(0)
        return seen_before

    assert asyncio.run(main()) == []
    assert stream.writes == ["line 0\nline 1\nline 2\nline 3\nline 4\n"]


def test_a_line_off_the_loop_is_written_at_once_after_the_pending_ones() -> None:
    stream = CountingStream()
    _, logger = handler_logger(stream)

    async def main() -> None:
        logger.warning("on the loop")
        thread = threading.Thread(target=logger.warning, args=("from a thread",))
        thread.start()
        thread.join()  # the thread's line is written before this pass ends: the pending one goes first
        assert stream.getvalue() == "on the loop\nfrom a thread\n"

    asyncio.run(main())
    logger.warning("after the loop")
    assert stream.getvalue() == "on the loop\nfrom a thread\nafter the loop\n"


def test_flush_writes_what_is_pending_and_a_full_pass_is_written_at_once() -> None:
    stream = CountingStream()
    handler, logger = handler_logger(stream)

    async def main() -> None:
        logger.warning("pending")
        handler.flush()  # logging's shutdown does this: a line of a loop that stops now is not lost
        assert stream.writes == ["pending\n"]
        for i in range(300):  # past MAX_PENDING_LINES (256): that pass's lines are written as they come
            logger.warning("%d", i)
        assert len(stream.writes) == 2 and stream.writes[1].count("\n") == 257  # the 257th joined them

    asyncio.run(main())
    handler.flush()  # the last 43, if the loop stopped before its next pass
    assert stream.getvalue().splitlines() == ["pending", *map(str, range(300))]
