"""`tokenbridge serve|usage|channels|config` (and, from cli_accounts.py, `accounts|keys|credit|codes`;
from cli_ops.py, `backup|restore`):
parse arguments, call into the package, print.

Every command takes `--config PATH` (default `$TOKENBRIDGE_CONFIG` or `./config.toml`) and most
take `--json`. Errors go to stderr with what to do next, and exit with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenbridge import cli_ops, serve
from tokenbridge.cli_accounts import ADVICE, add_commands
from tokenbridge.cli_common import CliError, duration, emit, print_table, with_db
from tokenbridge.money import format_usd
from tokenbridge.report import sum_csv, sum_json, usage_csv, usage_json
from tokenbridge.settings import ConfigError, Settings, load_settings
from tokenbridge.store.channels import list_channel_health
from tokenbridge.store.db import Database, StoreError, as_unavailable
from tokenbridge.store.usage import list_usage, sum_usage
from tokenbridge.upstream.client import UpstreamClient
from tokenbridge.upstream.probe import ProbeResult, probe

# --- commands -----------------------------------------------------------------------------------


# The table `usage` prints (a terminal's width); --json and --csv show every field.
USAGE_COLUMNS = [
    "request_id",
    "time",
    "key",
    "model",
    "channel",
    "status",
    "stream",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "usage_source",
    "end_reason",
    "latency_ms",
    "ttfb_ms",
    "error",
]


def cmd_usage(settings: Settings, args: argparse.Namespace) -> None:
    since = time.time() - duration(args.since) if args.since else None
    filters = {"key": args.key, "model": args.model, "since": since}
    if args.by:
        sums = asyncio.run(with_db(settings, lambda db: sum_usage(db, by=args.by, **filters)))
        rows = [sum_json(row, args.by) for row in sums]
        columns = [args.by, "requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd"]
    else:
        rows = [usage_json(row) for row in asyncio.run(with_db(settings, lambda db: list_usage(db, **filters)))]
        columns = USAGE_COLUMNS
    if args.csv:  # the admin API's CSV, column for column (report.py makes both)
        sys.stdout.write(sum_csv(rows, args.by) if args.by else usage_csv(rows))
        return
    emit(rows, args.json, columns)


def cmd_config_check(settings: Settings, args: argparse.Namespace) -> None:
    channels = [
        {
            "name": c.name,
            "kind": c.kind,
            "base_url": c.display_url or "(built in)",
            "models": ",".join(c.models),
            "priority": c.priority,
            "weight": c.weight,
            "enabled": c.enabled,
        }
        for c in settings.channels
    ]
    prices = {
        m: {"input": format_usd(p.input), "output": format_usd(p.output), "cached_input": format_usd(p.cached_input)}
        for m, p in settings.prices.items()
    }
    if args.json:
        emit(
            {
                "config": str(settings.path),
                "database": str(settings.server.database),
                "channels": channels,
                "models": sorted(settings.routes),
                "routes": {m: list(settings.model_routes[m]) for m in sorted(settings.routes)},  # what each serves
                "prices_usd_per_1m_tokens": prices,
            },
            True,
        )
        return
    print(f"{settings.path}: OK")
    print(f"database: {settings.server.database}")
    print(f"listen:   http://{settings.server.host}:{settings.server.port}/v1")
    print_table(channels, ["name", "kind", "base_url", "models", "priority", "weight", "enabled"])
    served = [f"{m} ({', '.join(settings.model_routes[m]) or 'no route'})" for m in sorted(settings.routes)]
    print(f"models served: {', '.join(served) or '(none)'}")


def cmd_channels_check(settings: Settings, args: argparse.Namespace) -> int:
    """Probe every enabled channel now; show what the running gateway's breakers last said."""

    async def work(db: Database) -> tuple[dict[str, ProbeResult], list[dict[str, Any]]]:
        client = UpstreamClient(pool_limit=settings.server.max_upstream_connections)
        await client.start()
        try:
            results = await asyncio.gather(*(probe(client, c) for c in settings.channels if c.enabled))
        finally:
            await client.close()
        return {r.channel: r for r in results}, await list_channel_health(db)

    probes, health = asyncio.run(with_db(settings, work))
    rows: list[dict[str, Any]] = []
    for channel in settings.channels:
        result = probes.get(channel.name)
        circuits = {h["model"]: h for h in health if h["channel"] == channel.name and h["model"] in channel.models}
        rows.append({
            "name": channel.name,
            "base_url": channel.display_url or "(built in)",
            "enabled": channel.enabled,
            "probe": result.status if result else "disabled in config: not probed",
            "ok": result.ok if result else None,
            "latency_ms": result.latency_ms if result else None,
            "circuits": {m: {"state": circuits[m]["state"], "reason": circuits[m]["reason"]} if m in circuits
                         else {"state": "closed", "reason": ""} for m in channel.models},
        })  # fmt: skip
    if args.json:
        emit(rows, True)
    else:
        for row in rows:
            row["breakers"] = ", ".join(
                f"{m}: {c['state']}" + (f" ({c['reason']})" if c["state"] != "closed" else "")
                for m, c in row["circuits"].items()
            )
        print_table(rows, ["name", "base_url", "probe", "latency_ms", "breakers"])
    return 0 if all(r["ok"] is not False for r in rows) else 1


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port
    serve.run(settings, host=host, port=port, workers=args.workers, log_format=args.log_format)


# --- argument parsing ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """`--config` and `--json` go before or after the command: both parsers know them, and SUPPRESS
    keeps a subcommand that did not get one from overwriting what the top level got (parse_args)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=argparse.SUPPRESS, help="config file (default: $TOKENBRIDGE_CONFIG or ./config.toml)"
    )
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    parser = argparse.ArgumentParser(
        prog="tokenbridge", description="A small, exact, fast OpenAI-compatible gateway.", parents=[common]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the gateway")
    serve.add_argument("--host", help="address to bind (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: server.port, 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="log lines as text (default) or one JSON object each",
    )
    serve.set_defaults(run=cmd_serve)

    add_commands(sub, common)  # accounts, keys, credit, codes (cli_accounts.py)
    cli_ops.add_commands(sub, common)  # backup, restore (cli_ops.py)

    usage = sub.add_parser("usage", parents=[common], help="usage rows or sums")
    usage.add_argument("--key", help="only this key (by name)")
    usage.add_argument("--model", help="only this model")
    usage.add_argument("--since", help="only the last DURATION, like 24h")
    usage.add_argument("--by", choices=["model", "key", "day"], help="sum by model, key or day")
    usage.add_argument("--csv", action="store_true", help="CSV output")
    usage.set_defaults(run=cmd_usage)

    channels = sub.add_parser("channels", help="check the channels").add_subparsers(dest="channels", required=True)
    channels.add_parser(
        "check", parents=[common], help="probe every enabled channel; show circuit breaker states"
    ).set_defaults(run=cmd_channels_check)

    config = sub.add_parser("config", help="check config.toml").add_subparsers(dest="config_command", required=True)
    config.add_parser("check", parents=[common], help="validate and show what would be served").set_defaults(
        run=cmd_config_check
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.config = getattr(args, "config", None)
    args.json = getattr(args, "json", False)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    path = Path(args.config or os.environ.get("TOKENBRIDGE_CONFIG") or "config.toml")
    try:
        settings = load_settings(path)
        try:
            status = args.run(settings, args)
        except sqlite3.Error as exc:  # a read of a broken database (writes are StoreUnavailable already)
            raise as_unavailable(settings.server.database, exc) or exc
    except ConfigError as exc:
        print(f"tokenbridge: bad config: {exc}", file=sys.stderr)
        return 2
    except (CliError, StoreError, serve.AlreadyServing) as exc:
        print(f"tokenbridge: {exc}", file=sys.stderr)
        return 2
    except tuple(ADVICE) as exc:
        advice = next(text for kind, text in ADVICE.items() if isinstance(exc, kind))
        print(f"tokenbridge: {exc}; {advice}", file=sys.stderr)
        return 2
    return int(status or 0)
