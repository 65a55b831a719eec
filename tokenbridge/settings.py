"""Load config.toml (SPEC §3) into frozen dataclasses, validated once, failing fast.

Every refusal is a `ConfigError` whose text names the file, the key (or the line, for TOML syntax
errors) and what is wrong, so a bad edit can be fixed without reading this module. `${VAR}` and
`${VAR:-default}` are expanded in every string value after parsing; messages name the variable,
never a value read from the environment, and never echo secrets (api_key, admin_token, base_url).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

from tokenbridge.accountsettings import AccountSettings, read_accounts
from tokenbridge.money import Price, to_fraction
from tokenbridge.routing import WITHOUT_OUTPUT, carriers_of, read_routes
from tokenbridge.tomlread import ConfigError, Table, quoted, syntax_error, toml_type

__all__ = ["Channel", "ConfigError", "Group", "ServerSettings", "Settings", "load_settings", "parse_settings"]

KINDS = ("openai", "anthropic", "echo")
COMPLETIONS = ("chat", "native")  # how /v1/completions, and /v1/responses (`responses`), reach a channel

_TOP_KEYS = ("server", "channels", "models", "groups", "accounts")
_SERVER_KEYS = (
    "host", "port", "database", "admin_token", "max_body_bytes", "default_max_tokens", "demo_credit_usd",
    "max_attempts", "watch_config", "breaker_failures", "breaker_error_ratio", "breaker_window", "breaker_cooldown",
    "breaker_max_cooldown", "max_upstream_connections", "cors_origins", "max_connections", "header_timeout",
    "max_header_bytes", "keepalive_timeout", "body_timeout", "wal_autocheckpoint",
)  # fmt: skip
_CHANNEL_KEYS = (
    "name", "kind", "base_url", "api_key", "models", "model_map", "priority", "weight", "completions", "responses",
    "enabled",
    "connect_timeout", "first_byte_timeout", "idle_timeout", "response_timeout",
)  # fmt: skip
_PRICE_KEYS = ("input", "output", "cached_input", "cache_write", "routes")  # routes: routing.py
_GROUP_KEYS = ("multiplier",)


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """The `breaker_*` keys of `[server]`: when a circuit opens and how long it backs off (upstream/breaker.py)."""

    failures: int = 3  # consecutive failures that open the circuit
    error_ratio: float = 0.5  # ...or this share of failures among the last `window` outcomes (counted
    # from a circuit's first failure: a channel that never failed keeps no state at all)
    window: int = 20
    cooldown_s: float = 5.0  # first back-off; doubles on every failed probe
    max_cooldown_s: float = 300.0


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The `[server]` table."""

    host: str = "127.0.0.1"
    port: int = 8080
    database: Path = Path("tokenbridge.db")  # made absolute against the config file's directory
    admin_token: str = field(default="", repr=False)  # empty: admin API off
    max_body_bytes: int = 4 * 1024 * 1024
    default_max_tokens: int = 4096  # completion tokens held when a request sets no max_tokens
    demo_credit: int = 10**9  # nano-USD; TOML `demo_credit_usd`
    max_attempts: int = 3  # channels tried per request
    max_upstream_connections: int = 1000  # requests open upstream at once, all channels (read at start)
    watch_config: bool = True  # reload this file when it changes (SIGHUP always reloads)
    breaker: BreakerSettings = BreakerSettings()
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API ("*": any); empty: no CORS
    # The caller's connection (wire.py; read at start): fds and memory an idle or slow caller may take.
    max_connections: int = 4096
    header_timeout_s: float = 10.0  # from connecting (or the first byte of a next request) to a whole head
    max_header_bytes: int = 64 * 1024
    keepalive_timeout_s: float = 5.0  # an idle keep-alive connection is closed after this
    body_timeout_s: float = 60.0  # the whole request body must arrive within this
    wal_autocheckpoint: int = 1000  # SQLite's default, in pages; 0: Litestream alone checkpoints (README)


@dataclass(frozen=True, slots=True)
class Channel:
    """One `[[channels]]` entry: an upstream (or the built-in echo) and the public models it serves."""

    name: str
    kind: str
    base_url: str = field(repr=False)  # may carry user:password@ or a ?key=: see display_url
    api_key: str = field(repr=False)
    models: tuple[str, ...]
    # Excluded from the hash only (a mapping proxy is unhashable), so channels can key dicts and sets.
    model_map: Mapping[str, str] = field(hash=False)
    priority: int = 0
    weight: int = 1
    completions: str = "chat"
    responses: str = "chat"  # /v1/responses: "chat" (answered through chat) or "native" (passed to /responses)
    enabled: bool = True
    connect_timeout_s: float = 5.0
    first_byte_timeout_s: float = 60.0
    idle_timeout_s: float = 60.0
    response_timeout_s: float = 600.0  # a non-stream answer: its head comes only after the whole generation

    @property
    def display_url(self) -> str:
        """base_url safe to print: no user:password@, no query."""
        if not self.base_url:
            return ""
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"

    def upstream_model(self, model: str) -> str:
        """The name the upstream knows `model` by."""
        return self.model_map.get(model, model)


@dataclass(frozen=True, slots=True)
class Group:
    """A `[groups.name]` table: the price multiplier for keys of this group (exact)."""

    multiplier: Fraction


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole validated config; `carriers` is what the mapping stage reads."""

    path: Path
    server: ServerSettings
    channels: tuple[Channel, ...]
    prices: Mapping[str, Price]
    groups: Mapping[str, Group]
    routes: Mapping[str, tuple[Channel, ...]]  # enabled channels per public model, highest priority first
    model_routes: Mapping[str, tuple[str, ...]]  # the routes each model in `routes` can be called on (routing.py)
    carriers: Mapping[tuple[str, str], tuple[Channel, ...]]  # (route, model) -> those channels that carry the route
    accounts: AccountSettings = AccountSettings()  # [accounts] (accountsettings.py)

    def group(self, name: str) -> Group:
        """The named group, or "default" for a group the config does not list."""
        return self.groups.get(name) or self.groups["default"]


def load_settings(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate; environ defaults to os.environ.

    Raises ConfigError (also for a missing/unreadable file, saying which path).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or type(exc).__name__}") from exc
    try:
        text = raw.decode("utf-8-sig")  # tolerate the BOM some Windows editors write
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {exc.start})") from exc
    return parse_settings(text, path, environ=os.environ if environ is None else environ)


def parse_settings(text: str, path: Path, *, environ: Mapping[str, str]) -> Settings:
    """Same, from text (tests use it)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {syntax_error(str(exc), text)}") from exc
    root = Table(str(path), environ, "", data)
    root.refuse_unknown(_TOP_KEYS)
    resolved = path.resolve()
    server = _read_server(root.table("server") or root.child("server", {}), resolved.parent)
    prices = _read_prices(root)
    groups = _read_groups(root)
    channels = _read_channels(root, prices)
    served = _routes(channels)
    narrowed = {
        model: read_routes(table, (c.kind for c in channels if model in c.models))
        for model, table in root.tables("models", quote=True).items()
    }
    model_routes, carriers = carriers_of(served, narrowed)
    _require_output_prices(root, model_routes)
    return Settings(
        path=resolved,
        server=server,
        channels=channels,
        prices=MappingProxyType(prices),
        groups=MappingProxyType(groups),
        routes=MappingProxyType(served),
        model_routes=MappingProxyType(model_routes),
        carriers=MappingProxyType(carriers),
        accounts=read_accounts(root.table("accounts") or root.child("accounts", {})),
    )


def _read_server(table: Table, config_dir: Path) -> ServerSettings:
    table.refuse_unknown(_SERVER_KEYS)
    defaults = ServerSettings()
    return ServerSettings(
        host=table.string("host", defaults.host, nonempty=True),
        port=table.integer("port", defaults.port, minimum=0, maximum=65535),
        # An absolute database path replaces config_dir.
        database=config_dir / table.string("database", str(defaults.database), nonempty=True),
        admin_token=table.string("admin_token", defaults.admin_token),
        max_body_bytes=table.integer("max_body_bytes", defaults.max_body_bytes, minimum=1),
        default_max_tokens=table.integer("default_max_tokens", defaults.default_max_tokens, minimum=1),
        demo_credit=table.nano_usd("demo_credit_usd", 1.0),
        max_attempts=table.integer("max_attempts", defaults.max_attempts, minimum=1),
        max_upstream_connections=table.integer(
            "max_upstream_connections", defaults.max_upstream_connections, minimum=1, maximum=1_000_000
        ),
        watch_config=table.boolean("watch_config", defaults.watch_config),
        breaker=_read_breaker(table),
        cors_origins=_read_origins(table),
        max_connections=table.integer("max_connections", defaults.max_connections, minimum=1),
        header_timeout_s=float(table.number("header_timeout", defaults.header_timeout_s, positive=True)),
        max_header_bytes=table.integer("max_header_bytes", defaults.max_header_bytes, minimum=1024),
        keepalive_timeout_s=float(table.number("keepalive_timeout", defaults.keepalive_timeout_s, positive=True)),
        body_timeout_s=float(table.number("body_timeout", defaults.body_timeout_s, positive=True)),
        wal_autocheckpoint=table.integer("wal_autocheckpoint", defaults.wal_autocheckpoint, minimum=0),
    )


def _read_origins(table: Table) -> tuple[str, ...]:
    origins = table.strings("cors_origins")
    for i, origin in enumerate(origins):
        parts = urlsplit(origin)
        bare = parts.scheme in ("http", "https") and parts.netloc and parts.path in ("", "/") and not parts.query
        if origin != "*" and not bare:
            raise table.error(f"cors_origins[{i}]", f'must be "*" or scheme://host[:port], got {quoted(origin)}')
    return tuple(origin.rstrip("/") for origin in origins)


def _read_breaker(table: Table) -> BreakerSettings:
    defaults = BreakerSettings()
    ratio = float(table.number("breaker_error_ratio", defaults.error_ratio, positive=True))
    if ratio > 1:
        raise table.error("breaker_error_ratio", f"must be a share between 0 and 1, got {ratio}")
    cooldown = float(table.number("breaker_cooldown", defaults.cooldown_s, positive=True))
    most = float(table.number("breaker_max_cooldown", max(defaults.max_cooldown_s, cooldown), positive=True))
    if most < cooldown:
        raise table.error("breaker_max_cooldown", f"must be >= breaker_cooldown ({cooldown:g}), got {most:g}")
    return BreakerSettings(
        failures=table.integer("breaker_failures", defaults.failures, minimum=1),
        error_ratio=ratio,
        window=table.integer("breaker_window", defaults.window, minimum=1),
        cooldown_s=cooldown,
        max_cooldown_s=most,
    )


def _read_prices(root: Table) -> dict[str, Price]:
    prices = {}
    for model, table in root.tables("models", quote=True).items():
        table.refuse_unknown(_PRICE_KEYS)
        input_nano = table.nano_usd("input")
        output_nano = table.nano_usd("output", 0)  # a model without output (embeddings) is priced by input alone
        cached = table.nano_usd("cached_input") if "cached_input" in table.data else input_nano
        write = table.nano_usd("cache_write") if "cache_write" in table.data else None  # None: as input
        prices[model] = Price(input=input_nano, output=output_nano, cached_input=cached, cache_write=write)
    return prices


def _require_output_prices(root: Table, model_routes: Mapping[str, tuple[str, ...]]) -> None:
    """`output` may be left out only for a model called on output-less routes alone (embeddings): a chat
    model without it would bill its answers at nothing."""
    for model, table in root.tables("models", quote=True).items():
        billed = [r for r in model_routes.get(model, ()) if r not in WITHOUT_OUTPUT]
        if "output" not in table.data and billed:
            raise table.error(
                "output",
                f"missing: the model is served on {', '.join(billed)}, whose answers are billed by output tokens;"
                ' give its price, or `routes = ["embeddings"]` for an embeddings model',
            )


def _read_groups(root: Table) -> dict[str, Group]:
    groups = {}
    for name, table in root.tables("groups").items():
        table.refuse_unknown(_GROUP_KEYS)
        groups[name] = Group(multiplier=to_fraction(table.number("multiplier", 1, positive=True)))
    groups.setdefault("default", Group(multiplier=Fraction(1)))
    return groups


def _read_channels(root: Table, prices: Mapping[str, Price]) -> tuple[Channel, ...]:
    entries = root.data.get("channels")
    if entries is None or entries == []:
        raise root.error("", "no [[channels]]: add at least one (see the shipped config.toml)")
    if not isinstance(entries, list):
        raise root.error("channels", f"expected an array of tables ([[channels]]), got {toml_type(entries)}")
    channels: list[Channel] = []
    seen: dict[str, str] = {}  # name -> where it was first defined
    for index, entry in enumerate(entries):
        where = f"channels[{index}]"
        if not isinstance(entry, dict):
            raise root.error(where, f"expected a table, got {toml_type(entry)}")
        name = root.child(where, entry).string("name", nonempty=True)
        label = f"{where} ({name})"
        if name in seen:
            raise root.error(f"{label}.name", f"duplicate channel name {quoted(name)} (also {seen[name]})")
        seen[name] = where
        channels.append(_read_channel(root.child(label, entry), name, prices))
    return tuple(channels)


def _read_channel(table: Table, name: str, prices: Mapping[str, Price]) -> Channel:
    table.refuse_unknown(_CHANNEL_KEYS)
    kind = table.string("kind", "openai", choices=KINDS)
    base_url = ""
    if kind == "echo":
        for key in ("base_url", "api_key"):
            if key in table.data:
                raise table.error(key, 'not allowed for kind "echo" (answered inside the process): remove it')
    else:
        if "base_url" not in table.data:
            example = "https://api.anthropic.com/v1" if kind == "anthropic" else "https://api.openai.com/v1"
            raise table.error("base_url", f'required for kind "{kind}" (e.g. "{example}")')
        # Never echo the URL: it may carry credentials (https://user:secret@host).
        base_url = table.string("base_url", "").rstrip("/")
        try:
            parts = urlsplit(base_url)
        except ValueError:  # e.g. an unclosed IPv6 bracket
            parts = urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise table.error("base_url", "must start with http:// or https:// and name a host")
    models = _read_models(table, prices)
    return Channel(
        name=name,
        kind=kind,
        base_url=base_url,
        api_key=table.string("api_key", ""),
        models=models,
        model_map=MappingProxyType(_read_model_map(table, models)),
        priority=table.integer("priority", 0),
        weight=table.integer("weight", 1, minimum=1),
        completions=table.string("completions", "chat", choices=COMPLETIONS),
        responses=table.string("responses", "chat", choices=COMPLETIONS),
        enabled=table.boolean("enabled", True),
        connect_timeout_s=float(table.number("connect_timeout", 5.0, positive=True)),
        first_byte_timeout_s=float(table.number("first_byte_timeout", 60.0, positive=True)),
        idle_timeout_s=float(table.number("idle_timeout", 60.0, positive=True)),
        response_timeout_s=float(table.number("response_timeout", 600.0, positive=True)),
    )


def _read_models(table: Table, prices: Mapping[str, Price]) -> tuple[str, ...]:
    if table.data.get("models") in (None, []):
        raise table.error("models", "must list at least one model")
    models: list[str] = []
    for model in table.strings("models"):
        if model in models:
            raise table.error("models", f"{quoted(model)} is listed twice")
        if model not in prices:
            raise table.error("models", f"{quoted(model)} is served but not priced: add [models.{quoted(model)}]")
        models.append(model)
    return tuple(models)


def _read_model_map(table: Table, models: tuple[str, ...]) -> dict[str, str]:
    mapping = table.table("model_map")
    if mapping is None:
        return {}
    for public in mapping.data:
        if public not in models:
            listed = ", ".join(map(quoted, models))
            raise table.error("model_map", f"{quoted(public)} is not in models ({listed})")
    keyed = table.child(mapping.where, {quoted(k): v for k, v in mapping.data.items()})
    return {public: keyed.string(quoted(public), nonempty=True) for public in mapping.data}


def _routes(channels: tuple[Channel, ...]) -> dict[str, tuple[Channel, ...]]:
    serving: dict[str, list[Channel]] = {}
    for channel in channels:
        if channel.enabled:
            for model in channel.models:
                serving.setdefault(model, []).append(channel)
    # sorted() is stable: config order is kept among channels of equal priority.
    return {model: tuple(sorted(chs, key=lambda c: -c.priority)) for model, chs in serving.items()}
