"""What keys and usage look like to people and programs: the JSON objects and CSV the CLI (`--json`,
`--csv`) and the admin API both show, made in one place so the two always agree on every figure.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tokenbridge.money import format_usd
from tokenbridge.store.keys import KeyRecord

# A usage row's fields, in order (`usage --json`, `GET /api/usage`, and the admin API's CSV).
USAGE_FIELDS = (
    "request_id", "time", "created_at", "key", "route", "model", "channel", "upstream_model", "status", "stream",
    "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "cost_nano_usd", "usage_source",
    "end_reason", "attempts", "latency_ms", "ttfb_ms", "error", "caller_request_id", "cache_write_tokens",
)  # fmt: skip
SUM_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "cost_nano_usd")
# Cells of free text (names a caller or an upstream chose) that a spreadsheet would run as a formula when
# they start with one of _FORMULA_STARTS: CSV gives them a leading ' (numbers, negative ones too, stay).
TEXT_FIELDS = frozenset({
    "request_id", "key", "route", "model", "channel", "upstream_model", "usage_source", "end_reason", "error",
    "caller_request_id", "note",
})  # fmt: skip
_CHANNEL_NAMED = re.compile(r"\b[Cc]hannel (?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")  # as repr() quotes
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def iso_time(unix_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_s))


def key_status(key: KeyRecord, now: float) -> str:
    """active | disabled | revoked | expired (an active key past its expiry)."""
    if key.status != "active" or key.expires_at is None or now < key.expires_at:
        return key.status
    return "expired"


def key_json(key: KeyRecord) -> dict[str, Any]:
    """A key as shown: never its secret (only its first characters, `prefix`)."""
    return {
        "id": key.public_id,
        "name": key.name,
        "account": key.account_name,
        "prefix": key.prefix,
        "group": key.group,
        "balance_usd": format_usd(key.balance),
        "balance_nano_usd": key.balance,
        "status": key_status(key, time.time()),
        "expires_at": key.expires_at,
        "models": sorted(key.models),
        "rpm": key.rpm,
        "tpm": key.tpm,
        "spend_limit_usd": None if key.spend_limit is None else format_usd(key.spend_limit),
        "spend_limit_nano_usd": key.spend_limit,
        "spend_period": key.spend_period,
        "allow_ips": list(key.allow_ips),
        "created_at": key.created_at,
    }


def with_cost(row: Mapping[str, Any]) -> dict[str, Any]:
    """A store row's integer `cost` as `cost_usd` (exact string) and `cost_nano_usd` (int)."""
    out = {k: v for k, v in row.items() if k != "cost"}
    out["cost_usd"] = format_usd(row["cost"] or 0)
    out["cost_nano_usd"] = row["cost"] or 0
    return out


def usage_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored usage row (with its key's name) as shown: USAGE_FIELDS, in that order."""
    shown = with_cost(row)
    shown["time"] = iso_time(row["created_at"])
    shown["stream"] = bool(row["stream"])
    return {f: shown[f] for f in USAGE_FIELDS}


def hide_channels(text: str) -> str:
    """An error text without the names of the channels in it ("channel 'acme' answered HTTP 500":
    "the provider answered HTTP 500"), for everyone but the admin: a reseller's suppliers stay its own."""
    return _CHANNEL_NAMED.sub("the provider", text)


def for_holder(row: dict[str, Any]) -> dict[str, Any]:
    """A usage row as shown (`usage_json`) to a member or a key: no channel, no upstream model."""
    error = row["error"]
    return {**row, "channel": None, "upstream_model": None, "error": hide_channels(error) if error else error}


def sum_json(row: Mapping[str, Any], by: str) -> dict[str, Any]:
    """A sum row (requests, tokens, cost) grouped `by` a column, as shown."""
    shown = with_cost(row)
    return {by: shown[by], **{f: shown.get(f) or 0 for f in SUM_FIELDS}}


def csv_cell(column: str, value: Any) -> Any:
    """A value as a CSV cell: a text field that a spreadsheet would take for a formula gets a leading '."""
    if column in TEXT_FIELDS and isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Rows as CSV (RFC 4180: CRLF line ends, so a CR or LF inside a cell is quoted) with a header line;
    columns not in `columns` are left out."""
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({c: csv_cell(c, row.get(c)) for c in columns} for row in rows)
    return out.getvalue()


def usage_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """Usage rows as shown (`usage_json`) in CSV: USAGE_FIELDS, for `usage --csv` and the admin API alike."""
    return csv_text(rows, USAGE_FIELDS)


def sum_csv(rows: Iterable[Mapping[str, Any]], by: str) -> str:
    """Sum rows as shown (`sum_json`) in CSV: `by`, then SUM_FIELDS."""
    return csv_text(rows, (by, *SUM_FIELDS))
