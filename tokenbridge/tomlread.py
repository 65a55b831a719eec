"""A typed reader of one parsed TOML table that knows its key path, so every refusal names the key.

`Table` is what settings.py reads config.toml through: getters check types and ranges, expand
`${VAR}` / `${VAR:-default}`, and raise `ConfigError("<file>: <key path>: <reason>")`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from typing import TypeVar

from tokenbridge.money import to_nano

# A valid reference is ${NAME} or ${NAME:-default}; a bare "${" that is neither is refused, not kept.
_VAR_REF = re.compile(r"\$\{(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})?")
_TOML_POSITION = re.compile(r"\s*\(at line (?P<line>\d+), column (?P<column>\d+)\)$")
_AT_END = " (at end of document)"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_T = TypeVar("_T")


class ConfigError(Exception):
    """config.toml is unusable; str() names the file, the key (or line for TOML syntax errors) and what is wrong."""


def syntax_error(message: str, text: str) -> str:
    """tomllib's message with its position moved to the front: "line 7: Invalid value (column 5)"."""
    position = _TOML_POSITION.search(message)
    if position is not None:
        return f"line {position['line']}: {message[: position.start()]} (column {position['column']})"
    # tomllib's only other form: "... (at end of document)", e.g. for a table header cut short.
    return f"line {max(len(text.splitlines()), 1)}: {message.removesuffix(_AT_END)} (at the end of the file)"


def toml_type(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
    return names.get(type(value), type(value).__name__)  # datetime, date, time


def quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Table:
    """One TOML table being read: typed getters that know their key path, for messages."""

    __slots__ = ("data", "environ", "file", "where")

    def __init__(self, file: str, environ: Mapping[str, str], where: str, data: Mapping[str, object]) -> None:
        self.file, self.environ, self.where, self.data = file, environ, where, data

    def child(self, where: str, data: Mapping[str, object]) -> Table:
        return Table(self.file, self.environ, where, data)

    def path(self, key: str) -> str:
        return ".".join(part for part in (self.where, key) if part)

    def error(self, key: str, reason: str) -> ConfigError:
        where = self.path(key)
        return ConfigError(f"{self.file}: {where}: {reason}" if where else f"{self.file}: {reason}")

    def expand(self, text: str, key: str) -> str:
        """Replace ${VAR} / ${VAR:-default} (default also when VAR is empty, as in the shell)."""

        def replace(match: re.Match[str]) -> str:
            name, default = match["name"], match["default"]
            if name is None:
                raise self.error(key, "malformed ${...}: write ${NAME} or ${NAME:-default}")
            value = self.environ.get(name)
            if default is not None:
                return value or default
            if value is None:
                hint = f"${{{name}:-fallback}} gives one"
                raise self.error(key, f"environment variable {name} is not set and has no default ({hint})")
            return value

        return _VAR_REF.sub(replace, text)

    def refuse_unknown(self, known: tuple[str, ...]) -> None:
        for key in self.data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f', did you mean "{close[0]}"?' if close else ""
                raise self.error(key, f"unknown key{hint} (known: {', '.join(known)})")

    def _typed(self, key: str, kind: type[_T], expected: str) -> _T | None:
        value = self.data.get(key)
        if value is None:
            return None
        # bool is an int subclass in Python, but `true` is no integer in TOML.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.error(key, f"expected {expected}, got {toml_type(value)}")
        return value

    def string(
        self, key: str, default: str | None = None, *, nonempty: bool = False, choices: tuple[str, ...] = ()
    ) -> str:
        value = self._typed(key, str, "a string")
        if value is None:
            if default is None:
                raise self.error(key, "required")
            value = default
        value = self.expand(value, key)
        if nonempty and not value:
            raise self.error(key, "must not be empty")
        if choices and value not in choices:
            raise self.error(key, f"must be one of {', '.join(map(quoted, choices))}, got {quoted(value)}")
        return value

    def strings(self, key: str) -> list[str]:
        """An array of non-empty strings (`${VAR}` expanded in each); absent: empty."""
        raw = self.data.get(key, [])
        if not isinstance(raw, list):
            raise self.error(key, f"expected an array of strings, got {toml_type(raw)}")
        items = self.child(self.where, {f"{key}[{i}]": item for i, item in enumerate(raw)})
        return [items.string(name, nonempty=True) for name in items.data]

    def integer(self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._typed(key, int, "an integer")
        if value is None:
            return default
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be <= {maximum}, got {value}")
        return value

    def number(self, key: str, default: float | None = None, *, positive: bool = False) -> int | float:
        value = self.data.get(key)
        if value is None:
            if default is None:
                raise self.error(key, "required")
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {toml_type(value)}")
        if not math.isfinite(value):
            raise self.error(key, f"must be a finite number, got {value}")
        if positive and value <= 0:
            raise self.error(key, f"must be > 0, got {value}")
        return value

    def nano_usd(self, key: str, default: float | None = None) -> int:
        """A USD amount (>= 0, at most 9 decimals) as exact nano-USD."""
        value = self.number(key, default)
        if value < 0:
            raise self.error(key, f"must be >= 0, got {value}")
        try:
            return to_nano(value)
        except ValueError as exc:
            raise self.error(key, "more than 9 decimal places (amounts are exact to 0.000000001 USD)") from exc

    def boolean(self, key: str, default: bool) -> bool:
        value = self._typed(key, bool, "a boolean (true or false)")
        return default if value is None else value

    def table(self, key: str) -> Table | None:
        value = self._typed(key, dict, "a table")
        return None if value is None else self.child(self.path(key), value)

    def tables(self, key: str, *, quote: bool = False) -> dict[str, Table]:
        """A table of named sub-tables, like [models."name"] (quote=True) or [groups.name]."""
        parent = self.table(key)
        if parent is None:
            return {}
        named = {}
        for name, value in parent.data.items():
            part = quoted(name) if quote or not _BARE_KEY.fullmatch(name) else name
            if not isinstance(value, dict):
                raise parent.error(part, f"expected a table, got {toml_type(value)}")
            named[name] = self.child(parent.path(part), value)
        return named
