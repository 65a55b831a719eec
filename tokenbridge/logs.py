"""Logging set-up for `tokenbridge serve`: text (the default) or JSON lines, and the access line's shape.

`--log-format json` makes every line on stderr one JSON object, uvicorn's included: uvicorn is started
with `log_config=None`, so its loggers propagate to the root handler set up here instead of getting
their own. A worker process (`--workers N`) starts with none of the parent's logging; it reads the
format from TOKENBRIDGE_LOG_FORMAT, which `serve` sets, the way it reads TOKENBRIDGE_CONFIG.

The access line (logger `tokenbridge.access`) is an `AccessLine`: its fields are formatted only when a
handler emits it, as logfmt (`key=value`, quoted where needed) in text, as top-level keys in JSON.

One line per request is on the hot path (issue 17), so the handler set up here is `LineHandler`: the
lines formatted in one pass of the event loop reach stderr in one write, in the loop's next pass (as
wire.py does for a connection's bytes), instead of one write system call per line; a line logged off
the loop (a thread, the CLI) is written at once, after any pending ones. The text formatter formats
the time once a second, not per line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import threading
import time
from typing import Any, TextIO

import orjson

LOG_FORMAT_ENV = "TOKENBRIDGE_LOG_FORMAT"
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_VALUE_CHARS = 200  # a caller-chosen value (a path, a model name) is cut here in a log line
MAX_PENDING_LINES = 256  # lines of one event-loop pass held for one write; past this they are written at once

# A value written bare in logfmt; anything else is quoted as a JSON string, so a caller's value with a
# space, a quote or a newline can neither forge a field nor a second line.
_BARE = re.compile(r"[A-Za-z0-9._:/@+\-]+")
_BARE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/@+-"  # _BARE's, for str.strip
_UNICODE_LINE_ENDS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class AccessLine:
    """The message of one access record: the fields, rendered lazily."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        parts = []
        for name, value in self.fields.items():  # logfmt_value, inlined for the common kinds of value
            kind = type(value)
            if kind is int or kind is float:
                parts.append(f"{name}={value}")
            elif kind is str and value and len(value) <= MAX_VALUE_CHARS and not value.strip(_BARE_CHARS):
                parts.append(f"{name}={value}")  # every character is one _BARE allows
            else:
                parts.append(f"{name}={logfmt_value(value)}")
        return " ".join(parts)


def logfmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is int or type(value) is float:
        return str(value)  # bare by construction: no regex for most fields of a line
    text = str(value)[:MAX_VALUE_CHARS]
    if _BARE.fullmatch(text):
        return text
    # JSON escapes the ASCII controls but not these three, which str.splitlines() and some viewers
    # take for line ends: escaped too, a caller's path cannot even look like a second line.
    return orjson.dumps(text).decode().translate(_UNICODE_LINE_ENDS)


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, with the time formatted once per second (logging's own default, `2026-11-25 10:00:00,123`)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: tuple[int, str] = (-1, "")  # one object, swapped whole: a thread reads a pair that agrees

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        second = self._second
        if second[0] != int(record.created):
            created = int(record.created)
            second = self._second = (created, time.strftime(self.default_time_format, self.converter(created)))
        return f"{second[1]},{int(record.msecs):03d}"


class LineHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler whose lines of one event-loop pass are written together, in the loop's next pass.

    Nothing waits on a timer: the write is a callback scheduled with the pass's first line. Off the
    loop (a thread, the CLI, interpreter exit) a line is written at once, after the pending ones, so
    the order is kept. Emit and the pass's write both run under the handler's lock; what is pending
    is at most one pass's lines (MAX_PENDING_LINES), and `flush()` (logging's shutdown) writes it too.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._pending: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the last loop a line was logged on, in its thread
        self._loop_thread = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except RecursionError:  # as StreamHandler.emit
            raise
        except Exception:
            self.handleError(record)
            return
        loop = self._loop
        if loop is None or threading.get_ident() != self._loop_thread or not loop.is_running():
            try:  # Python 3.11 asks the kernel for the pid on every look-up: once per loop, not per line
                loop = self._loop = asyncio.get_running_loop()
                self._loop_thread = threading.get_ident()
            except RuntimeError:
                loop = None
        if loop is None or len(self._pending) >= MAX_PENDING_LINES:
            self._pending.append(line)
            self._write_pending()
            return
        if not self._pending:
            loop.call_soon(self._write_pass)
        self._pending.append(line)

    def _write_pass(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # Handler.createLock made it
            self._write_pending()

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            self.stream.write(pending[0] if len(pending) == 1 else "".join(pending))
            self.stream.flush()
        except Exception:  # a closed or broken stderr: logging's own report, as for any handler
            self.handleError(
                logging.makeLogRecord({"msg": "%d log lines could not be written", "args": (len(pending),)})
            )

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()
        super().flush()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, pid, message (+ the access fields, + exc_info)."""

    _second: tuple[int, str] = (-1, "")  # as TextFormatter's: the time formatted once per second

    def format(self, record: logging.LogRecord) -> str:
        second = self._second
        if second[0] != int(record.created):
            created = int(record.created)
            second = self._second = (created, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)))
        line: dict[str, Any] = {
            "time": f"{second[1]}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # which worker, with --workers N
        }
        if isinstance(record.msg, AccessLine):
            fields = record.msg.fields
            line["message"] = f"{fields.get('method')} {fields.get('path')} {fields.get('status')}"
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode().translate(_UNICODE_LINE_ENDS)  # one line, as in text


def configure_logging(log_format: str | None = None) -> None:
    """Root handler on stderr at INFO, in `log_format` (default: $TOKENBRIDGE_LOG_FORMAT, else text).

    Replaces any handler set before (`force`), so calling it again (a worker's factory after uvicorn's
    own set-up) never doubles a line.
    """
    chosen = log_format or os.environ.get(LOG_FORMAT_ENV) or "text"
    if chosen not in LOG_FORMATS:
        raise ValueError(f"unknown log format {chosen!r} (from {LOG_FORMAT_ENV}?); use one of {', '.join(LOG_FORMATS)}")
    handler = LineHandler()
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    # Under `uvicorn --factory tokenbridge.app:app_from_env`, uvicorn set up its own text handlers
    # (and an access log that shows query strings) before building the app: theirs go, ours write.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # observe.py writes the one access line
    logging.captureWarnings(True)  # a Python warning is a log line too, in the same format


def peer(client: tuple[str, int] | None) -> str:
    """A caller's address for a log line ("?" when the server does not know it)."""
    return f"{client[0]}:{client[1]}" if client else "?"
