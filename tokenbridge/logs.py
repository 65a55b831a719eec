"""Logging set-up for `tokenbridge serve`: text (the default) or JSON lines, and the access line's shape.

`--log-format json` makes every line on stderr one JSON object, uvicorn's included: uvicorn is started
with `log_config=None`, so its loggers propagate to the root handler set up here instead of getting
their own. A worker process (`--workers N`) starts with none of the parent's logging; it reads the
format from TOKENBRIDGE_LOG_FORMAT, which `serve` sets, the way it reads TOKENBRIDGE_CONFIG.

The access line (logger `tokenbridge.access`) is an `AccessLine`: its fields are formatted only when a
handler emits it, as logfmt (`key=value`, quoted where needed) in text, as top-level keys in JSON.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

import orjson

LOG_FORMAT_ENV = "TOKENBRIDGE_LOG_FORMAT"
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_VALUE_CHARS = 200  # a caller-chosen value (a path, a model name) is cut here in a log line

# A value written bare in logfmt; anything else is quoted as a JSON string, so a caller's value with a
# space, a quote or a newline can neither forge a field nor a second line.
_BARE = re.compile(r"[A-Za-z0-9._:/@+\-]+")
_UNICODE_LINE_ENDS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class AccessLine:
    """The message of one access record: the fields, rendered lazily."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return " ".join(f"{name}={logfmt_value(value)}" for name, value in self.fields.items())


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


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, pid, message (+ the access fields, + exc_info)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
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
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT))
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
