"""The stage test kit: one stage run as a pure ASGI app, without the rest of the stack.

- `write_settings(dir, ...)`: a small config.toml written into a temp dir and loaded as the gateway would;
- `make_call(settings, **fields)`: a Call as the outer stages would have left it (`body` fills `raw_body`,
  `model`, `stream` and `upstream_body` unless given);
- `Inner(*messages, raises=..., wait=...)`: a scripted inner app that sends the given messages, then
  raises, or waits for the caller to leave; it counts its calls and can look at the store on entry;
- `run_stage(stage, call, request_body, ...)`: runs the stage as a server would, feeding the body to
  `receive`, collecting what is sent to the caller, and letting the caller leave after N messages.

Every stage is built here and only here (`body_stage`, `auth_stage`, `quota_stage`, `shape_stage`,
`meter_stage`, `proxy_stage`, `refusal_stage`): when a stage's constructor changes, this file changes, not the tests. The store is
the real one (`Database.open` on a file in the temp dir), never a mock.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tokenbridge.asgi import ASGIApp, Message, Scope
from tokenbridge.call import SCOPE_KEY, Call, get_call
from tokenbridge.circuits import Transition
from tokenbridge.errors import ClientGone, GatewayError
from tokenbridge.purse import Purse
from tokenbridge.settings import BreakerSettings, Settings, load_settings
from tokenbridge.stages.auth import AuthMiddleware
from tokenbridge.stages.body import BodyMiddleware
from tokenbridge.stages.meter import MeterMiddleware
from tokenbridge.stages.quota import QuotaMiddleware
from tokenbridge.stages.refusals import RefusalMiddleware
from tokenbridge.stages.shape import ShapeMiddleware
from tokenbridge.store.db import Database
from tokenbridge.store.keys import KeyCache
from tokenbridge.upstream.breaker import Breakers
from tokenbridge.upstream.client import UpstreamClient
from tokenbridge.upstream.proxy import UpstreamProxy

MODEL = "m"  # the one priced model of the default config: 1 USD per 1M prompt tokens, 2 USD per 1M completion
NANO_PER_PROMPT_TOKEN = 1_000
NANO_PER_COMPLETION_TOKEN = 2_000

ECHO_CHANNEL = f'[[channels]]\nname = "demo"\nkind = "echo"\nmodels = ["{MODEL}"]\n'
CONFIG = """
[server]
database = "stage.db"
watch_config = false
{server}
{channels}
[models."{model}"]
input = 1.0
output = 2.0

[groups.default]
multiplier = 1.0
"""

RUN_TIMEOUT_S = 20  # a guard against a stage that hangs, not a synchronisation: every run ends on its own


def write_settings(directory: Path, *, channels: str = ECHO_CHANNEL, **server: Any) -> Settings:
    """Settings from a config.toml written into `directory`; `server` adds `[server]` keys (TOML values)."""
    lines = "\n".join(f"{name} = {orjson.dumps(value).decode()}" for name, value in server.items())
    path = directory / "config.toml"
    path.write_text(CONFIG.format(server=lines, channels=channels, model=MODEL))
    return load_settings(path, environ={})


def make_call(settings: Settings, **fields: Any) -> Call:
    """A Call with what the outer stages would have written: pass any field by name."""
    call = Call(request_id=fields.pop("request_id", "req-stage"), settings=settings)
    body = fields.get("body")
    if body is not None:
        fields.setdefault("raw_body", orjson.dumps(body))
        fields.setdefault("model", body.get("model", ""))
        fields.setdefault("stream", body.get("stream") is True)
        fields.setdefault("upstream_body", body)  # what the proxy writes on the chat route
        fields.setdefault("route", "chat")
    for name, value in fields.items():
        setattr(call, name, value)
    return call


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}


# --- scripted inner apps and what the caller saw --------------------------------------------------------------------


def json_messages(payload: Any, *, status: int = 200) -> list[Message]:
    data = orjson.dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": data, "more_body": False},
    ]


def sse_messages(*events: bytes, end: bool = True) -> list[Message]:
    """A stream's head, one body message per event, and (if `end`) the empty last message."""
    messages: list[Message] = [
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
    ]
    messages += [{"type": "http.response.body", "body": event, "more_body": True} for event in events]
    if end:
        messages.append({"type": "http.response.body", "body": b"", "more_body": False})
    return messages


class Inner:
    """A scripted inner app: sends `messages` (copies: stages may edit them), then raises `raises`, or
    with `wait` reads `receive` until the caller leaves and raises ClientGone as the proxy does.

    `on_enter(call)` runs before anything is sent (say, to read the holds table); `calls` counts runs.
    """

    def __init__(
        self,
        *messages: Message,
        raises: BaseException | None = None,
        wait: bool = False,
        on_enter: Callable[[Call], Awaitable[None]] | None = None,
    ) -> None:
        self.messages = messages
        self.raises = raises
        self.wait = wait
        self.on_enter = on_enter
        self.calls = 0
        self.scope: Scope | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.calls += 1
        self.scope = scope
        if self.on_enter is not None:
            await self.on_enter(get_call(scope))
        for message in self.messages:
            await send(dict(message))
        if self.wait:
            while (await receive())["type"] != "http.disconnect":
                pass
            raise ClientGone()
        if self.raises is not None:
            raise self.raises


@dataclass
class Result:
    """What the caller saw: the messages sent to it, and what the stage raised (intake would render it)."""

    messages: list[Message] = field(default_factory=list)
    error: BaseException | None = None
    received: int = 0  # receive() calls the stage (and its inner app) made

    @property
    def started(self) -> bool:
        return any(m["type"] == "http.response.start" for m in self.messages)

    @property
    def status(self) -> int | None:
        """The response's status; for an error raised before any byte, the one intake renders."""
        for message in self.messages:
            if message["type"] == "http.response.start":
                return int(message["status"])
        return self.error.status if isinstance(self.error, GatewayError) else None

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")

    def error_json(self) -> dict[str, Any]:
        """The OpenAI-shaped error intake would send for what the stage raised."""
        assert isinstance(self.error, GatewayError), f"expected a GatewayError, got {self.error!r}"
        error: dict[str, Any] = orjson.loads(self.error.body())["error"]
        return error


async def run_stage(
    stage: ASGIApp,
    call: Call,
    request_body: bytes = b"",
    *,
    chunks: Iterable[bytes] | None = None,
    headers: Iterable[tuple[bytes, bytes]] = (),
    leave_after: int | None = None,
    truncated: bool = False,
    leave_when: Callable[[], Awaitable[Any]] | None = None,
    on_send: Callable[[Message], Awaitable[None]] | None = None,
    client: tuple[str, int] | None = None,
) -> Result:
    """Run one stage with `call` in its scope, as uvicorn would run it.

    `receive` gives the body (`request_body`, or `chunks` one message each), then blocks until the
    caller leaves: after `leave_after` messages reached it (0: right after the body), or never.
    `leave_when()`: the caller leaves once it returns (say, once an upstream holds the request).
    `truncated`: the last piece says more is coming (with `leave_after=0`: the caller left mid-body).
    `client`: the socket's peer, as uvicorn puts it in the scope (default: none known).
    `on_send(message)` runs as each message reaches the caller, before it is recorded (to look at
    the store at that moment). Body bytes sent are counted into `call.delivered`, as intake does.
    Whatever the stage raises is kept in `result.error`, not raised.
    """
    parts = list(chunks) if chunks is not None else [request_body]
    last = len(parts) - 1
    incoming: list[Message] = [
        {"type": "http.request", "body": part, "more_body": truncated or i < last} for i, part in enumerate(parts)
    ]
    result = Result()
    gone = asyncio.Event()
    if leave_after == 0:
        gone.set()

    async def receive() -> Message:
        result.received += 1
        if incoming:
            return incoming.pop(0)
        if leave_when is not None:
            await leave_when()
        else:
            await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if on_send is not None:
            await on_send(message)
        if message["type"] == "http.response.body":
            call.delivered += len(message.get("body", b""))
        result.messages.append(message)
        if leave_after is not None and len(result.messages) >= leave_after:
            gone.set()

    scope: Scope = {
        "type": "http", "method": "POST", "path": "/", "headers": list(headers), "client": client, SCOPE_KEY: call,
    }  # fmt: skip
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            await stage(scope, receive, send)
    except Exception as exc:
        result.error = exc
    return result


# --- the store, and the parts of the runtime a stage reads ----------------------------------------------------------


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Database]:
    """The real SQLite store at the config's database path (a file in the temp dir)."""
    db = await Database.open(settings.server.database)
    try:
        yield db
    finally:
        await db.close()


@dataclass(frozen=True)
class Books:
    """One key's money as the store has it: its account's balance and ledger, its open holds, its usage rows."""

    balance: int
    ledger: list[tuple[str, int]]  # (kind, amount), in order
    holds: list[tuple[str, int]]  # (request_id, amount)
    usage: list[dict[str, Any]]

    @property
    def ledger_sum(self) -> int:
        return sum(amount for _, amount in self.ledger)


_PURSES: weakref.WeakKeyDictionary[Database, Purse] = weakref.WeakKeyDictionary()


def purse_of(db: Database) -> Purse:
    """The one purse of the quota stages on `db`, as the runtime has one per process."""
    return _PURSES.setdefault(db, Purse(lambda: db))


async def books(db: Database, key_id: int) -> Books:
    """The key's books. Chunks with no request in flight are returned first, as the runtime does when
    they idle: a hold left here is a request's that has not settled (or the chunk it is in)."""
    await purse_of(db).return_idle(idle_s=0)

    async def rows(sql: str) -> list[dict[str, Any]]:
        async with db.reader.execute(sql, (key_id,)) as cur:
            return [dict(row) for row in await cur.fetchall()]

    (key,) = await rows("SELECT a.balance FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = ?")
    ledger = await rows(
        "SELECT kind, amount FROM ledger WHERE account_id = (SELECT account_id FROM api_keys WHERE id = ?) ORDER BY id"
    )
    holds = await rows("SELECT request_id, amount FROM holds WHERE key_id = ?")
    usage = await rows("SELECT * FROM usage_events WHERE key_id = ? ORDER BY rowid")
    return Books(
        key["balance"],
        [(row["kind"], row["amount"]) for row in ledger],
        [(row["request_id"], row["amount"]) for row in holds],
        usage,
    )


def dropped_retry(work: Any) -> None:
    """A `spawn` for stages that retry in the background: these tests do not run the retries."""
    work.close()


# --- every stage is built here ----------------------------------------------------------------------------------------


def body_stage(inner: ASGIApp, *, kind: str = "chat") -> ASGIApp:
    return BodyMiddleware(inner, route=kind)


def auth_stage(inner: ASGIApp, *, db: Database, keys: KeyCache | None = None) -> ASGIApp:
    return AuthMiddleware(inner, keys=keys or KeyCache(), db=lambda: db)


def refusal_stage(inner: ASGIApp, *, db: Database, keys: KeyCache | None = None) -> ASGIApp:
    return RefusalMiddleware(inner, keys=keys or KeyCache(), db=lambda: db)


def quota_stage(inner: ASGIApp, *, db: Database, spawn: Callable[[Any], None] = dropped_retry) -> ASGIApp:
    return QuotaMiddleware(inner, db=lambda: db, purse=purse_of(db), spawn=spawn)


def meter_stage(inner: ASGIApp) -> ASGIApp:
    return MeterMiddleware(inner)


def shape_stage(inner: ASGIApp) -> ASGIApp:
    return ShapeMiddleware(inner)


def proxy_stage(*, client: UpstreamClient, breakers: Breakers) -> ASGIApp:
    return UpstreamProxy(client=client, breakers=breakers)


@asynccontextmanager
async def upstream_client(settings: Settings) -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(pool_limit=settings.server.max_upstream_connections)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


def breakers(*, failures: int = 1) -> tuple[Breakers, list[Transition]]:
    """Circuit breakers that open on the first failure (so one record shows), and the transitions they report."""
    changes: list[Transition] = []
    return Breakers(BreakerSettings(failures=failures), on_change=changes.append, clock=lambda: 0.0), changes
